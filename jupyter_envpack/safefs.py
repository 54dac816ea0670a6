"""Writing into folders that hostile repositories control (RELIABILITY L1, L8).

A notebook's folder is input: it may hold a symlink at any name envpack writes (``nb.envpack.ipynb``,
``binder/requirements.txt``, ``…/Dockerfile``), pointing at ``~/.bashrc``. Every write into a user
folder therefore goes through :func:`safe_write`: the data lands in a fresh ``mkstemp`` file
(``O_CREAT|O_EXCL|O_NOFOLLOW``, mode 0600 from creation) in the target folder, is fsynced and
renamed over the final name, which is never followed; an existing symlink there is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def refuse_symlink(path: Path) -> None:
    """Raise :class:`InputError` when ``path`` is a symbolic link (its target is never touched).

    Parameters
    ----------
    path
        The name about to be written.
    """
    if path.is_symlink():
        raise InputError(
            f"{path} is a symbolic link; envpack does not write through links",
            hint=f"remove the link ({path}) or choose another output path",
        )


def safe_write(path: str | os.PathLike[str], data: str | bytes, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` atomically without following any symbolic link.

    Parameters
    ----------
    path
        The final file name; its folder must exist.
    data
        Text (written as UTF-8) or bytes.
    mode
        Permission bits of the new file (``0o600`` for secrets: the file never has wider ones).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        ``path`` is a symbolic link.
    OSError
        The folder is not writable, or ``path`` is a folder.
    """
    target = Path(path)
    refuse_symlink(target)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            if mode != PRIVATE_FILE:
                os.fchmod(fh.fileno(), mode)
            fh.write(raw)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(target)  # rename(2): a link planted since is replaced, never followed
    except BaseException:
        with contextlib.suppress(OSError):
            Path(tmp).unlink()
        raise
    return target


def private_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (and parents) as 0700 whatever the umask (RELIABILITY L8).

    An existing folder is left as it is, except envpack's own data folder (named ``envpack``),
    which an older version may have made 0755: it is tightened. A configured path such as
    ``/tmp/x.sqlite`` thus never changes ``/tmp``.

    Parameters
    ----------
    path
        envpack's data folder, or the folder of a file envpack keeps.

    Returns
    -------
    Path
        ``path``.
    """
    folder = Path(path)
    folder.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    with contextlib.suppress(FileExistsError):
        folder.mkdir(PRIVATE_DIR)  # the umask may only remove bits: 0700 stays 0700 or less
    info = os.lstat(folder)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise InputError(f"{folder} is not a folder", hint="remove it; envpack recreates it")
    own = folder.name == "envpack" and info.st_uid == os.getuid()
    if own and stat.S_IMODE(info.st_mode) & 0o077:
        folder.chmod(PRIVATE_DIR)
    return folder


def private_file(path: str | os.PathLike[str]) -> Path:
    """Make sure ``path`` exists as a 0600 file created with that mode (e.g. an SQLite database).

    Parameters
    ----------
    path
        A file inside a :func:`private_dir`.

    Returns
    -------
    Path
        ``path``.
    """
    target = Path(path)
    refuse_symlink(target)
    with contextlib.suppress(FileExistsError):
        os.close(
            os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW, PRIVATE_FILE)
        )
    return target


@contextlib.contextmanager
def folder_lock(folder: Path, name: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder/name`` (created 0600, never through a link) for the
    block: builds in other processes or threads that share ``folder`` wait for each other."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
