"""API paths → files inside the contents root, refused before anything is read.

Contents-manager semantics: an API path is ``/``-separated and relative to the server's root.
Traversal, absolute or Windows paths, NUL bytes, hidden components (unless ``allow_hidden``) and
symlinks that leave the root are "not found" (404, so the response says nothing about what exists
outside). Directories, FIFOs, sockets and devices are 400 and are never opened: only ``lstat``/
``stat`` run before the check (RELIABILITY B1, B2, B3, B6).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import InputError, NotebookTooLargeError, NotFoundError

MAX_PATH = 1024


def _not_found(api_path: str) -> NotFoundError:
    shown = api_path if len(api_path) <= 200 and api_path.isprintable() else "(invalid path)"
    return NotFoundError(f"no notebook at {shown!r}", hint="paths are relative to the server root")


def split_api_path(api_path: str, *, allow_hidden: bool = False) -> list[str]:
    """Return the components of ``api_path`` or raise ``NotFoundError`` (never touches disk)."""
    if not api_path or len(api_path) > MAX_PATH or "\x00" in api_path or "\\" in api_path:
        raise _not_found(api_path)
    if api_path.startswith("/") or (len(api_path) > 1 and api_path[1] == ":"):
        raise _not_found(api_path)
    parts = [p for p in api_path.split("/") if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        raise _not_found(api_path)
    if not allow_hidden and any(p.startswith(".") for p in parts):
        raise _not_found(api_path)
    return parts


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def resolve_notebook(
    root_dir: str | os.PathLike[str],
    api_path: str,
    *,
    allow_hidden: bool = False,
    max_size: int | None = None,
    suffixes: tuple[str, ...] = (".ipynb",),
) -> Path:
    """Return the real path of the notebook ``api_path`` under ``root_dir``.

    Raises
    ------
    NotFoundError
        The path is malformed, escapes the root (directly or through a symlink), is hidden,
        or does not exist (404).
    InputError
        The path is a directory, FIFO, socket or device, or not a notebook (400).
    NotebookTooLargeError
        The file is larger than ``max_size`` (413).
    """
    root = Path(os.path.realpath(root_dir))
    parts = split_api_path(api_path, allow_hidden=allow_hidden)
    try:
        real = Path(os.path.realpath(root.joinpath(*parts), strict=True))
    except (OSError, ValueError):
        raise _not_found(api_path) from None
    if not _inside(real, root):
        raise _not_found(api_path)
    if not allow_hidden and any(p.startswith(".") for p in real.relative_to(root).parts):
        raise _not_found(api_path)
    try:
        info = real.stat()
    except OSError:
        raise _not_found(api_path) from None
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{api_path!r} is not a regular file", hint="give a notebook's path")
    if suffixes and real.suffix not in suffixes:
        raise InputError(f"{api_path!r} is not a notebook", hint="give a .ipynb file")
    if max_size is not None and info.st_size > max_size:
        raise NotebookTooLargeError(
            f"{api_path!r} is larger than {max_size} bytes",
            hint="raise c.EnvPack.max_notebook_size",
        )
    return real


def resolve_output(
    root_dir: str | os.PathLike[str], api_path: str, *, allow_hidden: bool = False
) -> Path:
    """Return where an output notebook ``api_path`` may be written (its folder must exist
    inside the root; an existing file there must be a regular file)."""
    root = Path(os.path.realpath(root_dir))
    parts = split_api_path(api_path, allow_hidden=allow_hidden)
    if not parts[-1].endswith(".ipynb"):
        raise InputError(f"output {api_path!r} must end in .ipynb")
    try:
        folder = Path(os.path.realpath(root.joinpath(*parts[:-1]), strict=True))
    except (OSError, ValueError):
        raise _not_found(api_path) from None
    if not _inside(folder, root) or not folder.is_dir():
        raise _not_found(api_path)
    target = folder / parts[-1]
    if target.is_symlink() or (target.exists() and not target.is_file()):
        raise InputError(f"output {api_path!r} exists and is not a regular file")
    return target


def api_path_of(root_dir: str | os.PathLike[str], path: Path) -> str:
    """Return ``path`` relative to the root, ``/``-separated (its bare name when outside)."""
    root = Path(os.path.realpath(root_dir))
    real = Path(os.path.realpath(path))
    return real.relative_to(root).as_posix() if _inside(real, root) else real.name


class ContentsPaths:
    """The contents root's path policy, as the ``OperationManager`` and handlers use it."""

    def __init__(
        self,
        root_dir: str | os.PathLike[str],
        *,
        allow_hidden: bool = False,
        max_size: int | None = None,
    ) -> None:
        self.root_dir = os.path.realpath(root_dir)
        self.allow_hidden = allow_hidden
        self.max_size = max_size

    def notebook(self, api_path: str) -> Path:
        """Return the notebook's real path (see :func:`resolve_notebook`)."""
        return resolve_notebook(
            self.root_dir, api_path, allow_hidden=self.allow_hidden, max_size=self.max_size
        )

    def output(self, api_path: str) -> Path:
        """Return where an output notebook may be written (see :func:`resolve_output`)."""
        return resolve_output(self.root_dir, api_path, allow_hidden=self.allow_hidden)

    def relative(self, path: Path) -> str:
        """Return the API path of ``path``."""
        return api_path_of(self.root_dir, path)
