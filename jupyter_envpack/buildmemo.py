"""The no-op build's fast path: a memo of a notebook's last build, used while its inputs are unchanged.

A build of an unchanged notebook whose image exists does no work, but finding that out takes a
snapshot (read the notebook, probe the kernel), the plan and the context hash, and imports the
docker SDK to ask the engine: ~0.4 s of a 0.06 s ``docker build -q``. After every successful
build (or cache hit) :func:`remember` writes one entry under ``~/.cache/jupyter-envpack/noop``
(0700, written with :func:`~jupyter_envpack.safefs.safe_write`), named by a key over

- the notebook's bytes, the surface's settings (flags or options), the environment variables that
  reach a build (``PIP_*``, ``DOCKER_*``, ``PATH`` …) and envpack's own code (stat of its files);

and holding what the key cannot see, each checked by :func:`recall` before the image is trusted:

- ``os.stat`` of every file and folder the result came from: the folders under the notebook's
  (a created or removed file changes its folder), the local and data files shipped, the
  ``.envpack.lock`` beside it, the Jupyter config and kernelspec files, the kernel interpreter
  and its ``sys.path`` folders (the probe's own fingerprint: an installed package changes them);
- the image and base image ids, asked over the engine's unix socket with one HTTP/1.0 request
  each (no docker SDK); an engine reached over TCP/TLS/ssh has no fast path.

Anything unexpected (no entry, a changed stat, a missing image, a junk entry) returns ``None``
and the caller takes the full path, which rebuilds when needed and writes a new entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import stat
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

TYPE_CHECKING = False  # not typing's: the no-op path does not import typing (~3 ms)
if TYPE_CHECKING:
    from typing import Any

MEMO_VERSION = 1
MAX_NOTEBOOK = 64 << 20
"""A bigger notebook is not memoised (its hash would cost what the memo saves)."""
MAX_ENTRY = 1 << 20
MAX_DIRS = 256
"""Folders watched under the notebook's; a bigger tree is not memoised."""
MAX_ENTRIES = 512
"""Entries kept; beyond that the oldest go (every notebook version writes one)."""
MAX_RESPONSE = 1 << 20
SOCKET_TIMEOUT = 5.0
ENV_PREFIXES = (
    "ENVPACK_",
    "PIP_",
    "UV_",
    "DOCKER_",
    "JUPYTER",
    "XDG_",
    "PYTHON",
    "CONDA",
    "VIRTUAL_ENV",
    "SSL_CERT",
    "REQUESTS_CA",
    "PATH",
    "HOME",
)
_IMAGE = re.compile(r"[a-z0-9][a-z0-9._/-]{0,200}:[0-9a-f]{20}\Z")
_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]{0,500}\Z")
"""What an image reference may hold here (validated names; nothing to escape in a URL path)."""
_ID = re.compile(r"sha256:[0-9a-f]{64}\Z")
_PACKAGE = Path(__file__).resolve().parent
_code: list[str] = []


class Recalled:
    """A remembered build whose inputs and image are unchanged."""

    __slots__ = ("events", "image", "result")

    def __init__(
        self, image: str, result: dict[str, Any], events: list[tuple[str, str, str]]
    ) -> None:
        self.image = image
        self.result = result
        self.events = events


def memo_dir() -> Path:
    """``$XDG_CACHE_HOME/jupyter-envpack/noop`` (default ``~/.cache/…``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "jupyter-envpack" / "noop"


def signature(path: str | os.PathLike[str]) -> list[int] | None:
    """Size, mtime, inode and ctime of ``path`` (None when it does not exist)."""
    try:
        st = os.stat(path)  # noqa: PTH116 - a str path, no Path object per watched file
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]


def _code_fingerprint() -> str:
    """Stat of envpack's own files: a new version (or an edited checkout) is a new key."""
    if not _code:
        h = hashlib.sha256()
        for folder, dirs, files in os.walk(_PACKAGE):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
            for name in sorted(files):
                if name.endswith(".py"):
                    h.update(f"{folder}/{name}:{signature(Path(folder, name))}".encode())
        _code.append(h.hexdigest())
    return _code[0]


def memo_key(nb_bytes: bytes, settings: dict[str, Any]) -> str:
    """The entry name of this notebook built with these settings in this environment."""
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}
    ident = {
        "v": MEMO_VERSION,
        "code": _code_fingerprint(),
        "notebook": hashlib.sha256(nb_bytes).hexdigest(),
        "settings": settings,
        "env": env,
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()


def read_notebook(nb_path: str | os.PathLike[str]) -> bytes | None:
    """The notebook's bytes, or None when it is missing, not a regular file or too big."""
    try:
        fd = os.open(nb_path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_NOTEBOOK:
            return None
        with os.fdopen(os.dup(fd), "rb") as fh:
            return fh.read(MAX_NOTEBOOK + 1)
    except OSError:
        return None
    finally:
        os.close(fd)


# ---------------------------------------------------------------- the engine, without an SDK
def unix_socket_path(address: str) -> str | None:
    """The socket file of a ``unix://`` engine address (None for tcp, ssh, npipe …)."""
    return address[len("unix://") :] if address.startswith("unix:///") else None


def image_id(sock_path: str, ref: str, timeout: float = SOCKET_TIMEOUT) -> str | None:
    """The id of ``ref`` on the engine at ``sock_path`` (None: no such image or no answer)."""
    if not _REF.match(ref):
        return None
    request = f"GET /images/{ref}/json HTTP/1.0\r\nHost: docker\r\n\r\n"  # no escape needed
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(sock_path)
            sock.sendall(request.encode())
            raw = _read_all(sock)
    except OSError:
        return None
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")):
        return None
    try:
        found = json.loads(body).get("Id")
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, str) and _ID.match(found) else None


def _read_all(sock: socket.socket) -> bytes:
    chunks, size = [], 0
    while size <= MAX_RESPONSE:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------- recall and remember
def recall(nb_path: str | os.PathLike[str], settings: dict[str, Any]) -> Recalled | None:
    """The remembered build of ``nb_path`` when nothing it came from changed and its image exists.

    Parameters
    ----------
    nb_path
        The notebook.
    settings
        Everything the surface passes that shapes the build (JSON-able; same as for
        :func:`remember`).

    Returns
    -------
    Recalled or None
        None whenever the full build path must decide.
    """
    started = time.monotonic()
    nb_bytes = read_notebook(nb_path)
    if nb_bytes is None:
        return None
    entry = _load(memo_dir() / f"{memo_key(nb_bytes, settings)[:40]}.json")
    if entry is None or not _unchanged(entry["watched"]):
        return None
    sock_path = unix_socket_path(entry["engine"])
    if sock_path is None or image_id(sock_path, entry["image"]) != entry["image_id"]:
        return None
    base = entry["base"]
    if base is not None and image_id(sock_path, base[0]) != base[1]:
        return None
    events = [(str(a), str(b), str(c)) for a, b, c in entry["events"]]
    result = {**entry["result"], "duration": round(time.monotonic() - started, 3)}
    return Recalled(entry["image"], result, events)


def _load(path: Path) -> dict[str, Any] | None:
    """The entry at ``path`` when it is a well-formed one (anything else: None)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as fh:
            entry = json.loads(fh.read(MAX_ENTRY + 1))
        ok = (
            entry["version"] == MEMO_VERSION
            and _IMAGE.match(entry["image"])
            and _ID.match(entry["image_id"])
            and isinstance(entry["engine"], str)
            and isinstance(entry["watched"], list)
            and isinstance(entry["result"], dict)
            and entry["result"].get("image") == entry["image"]
            and all(len(e) == 3 for e in entry["events"])
            and (entry["base"] is None or _ID.match(entry["base"][1]))
        )
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None
    return entry if ok else None


def _unchanged(watched: list[Any]) -> bool:
    try:
        return all(signature(path) == sig for path, sig in watched)
    except (TypeError, ValueError):
        return False


def remember(
    nb_path: str | os.PathLike[str],
    settings: dict[str, Any],
    result: dict[str, Any],
    watched: Iterable[str | os.PathLike[str]],
    engine: str,
    base_image: str | None,
    events: Sequence[tuple[str, str, str]] = (),
) -> Path | None:
    """Write the memo entry of a successful build (nothing when it cannot be trusted later).

    Parameters
    ----------
    nb_path
        The notebook, read again now: the key is over the bytes the build saw or newer ones,
        and newer bytes only make a key that is never asked for.
    settings
        As for :func:`recall`.
    result
        :meth:`BuildResult.to_json` (what the fast path hands back, with ``cached`` true).
    watched
        Files the result came from besides the notebook (see :func:`inputs`); folders under
        the notebook's are added here.
    engine
        The engine address the build used (only ``unix://`` ones are memoised).
    base_image
        The base image reference as the build named it (its id is recorded).
    events
        ``(stage, message, kind)`` progress events to replay (the snapshot's warnings …).

    Returns
    -------
    Path or None
        The entry written, or None.
    """
    nb_bytes = read_notebook(nb_path)
    sock_path = unix_socket_path(engine)
    folders = _folders(Path(nb_path).resolve().parent)
    if nb_bytes is None or sock_path is None or folders is None:
        return None
    image = str(result.get("image"))
    found = image_id(sock_path, image)
    base = None
    if base_image:
        name = base_image.split("@", 1)[0]
        base = [name, image_id(sock_path, name)]
    if found is None or (base is not None and base[1] is None):
        return None
    entry = {
        "version": MEMO_VERSION,
        "image": image,
        "image_id": found,
        "engine": engine,
        "base": base,
        "watched": [[str(p), signature(p)] for p in [*folders, *watched]],
        "result": {**result, "cached": True},
        "events": [list(e) for e in events],
    }
    return _write(memo_dir() / f"{memo_key(nb_bytes, settings)[:40]}.json", entry)


def _write(path: Path, entry: dict[str, Any]) -> Path | None:
    from .safefs import PRIVATE_FILE, private_dir, safe_write

    try:
        private_dir(path.parent)
        _prune(path.parent)
        return safe_write(path, json.dumps(entry), mode=PRIVATE_FILE)
    except (OSError, ValueError):
        return None


def _prune(folder: Path) -> None:
    """Remove the oldest entries beyond :data:`MAX_ENTRIES` (a racing remover is harmless)."""
    entries = list(folder.glob("*.json"))
    if len(entries) < MAX_ENTRIES:
        return
    by_age = sorted(entries, key=lambda p: (signature(p) or [0, 0])[1])
    aged = by_age[: len(entries) - MAX_ENTRIES + 1]
    for old in aged:
        with contextlib.suppress(OSError):
            old.unlink()


def _folders(top: Path) -> list[Path] | None:
    """``top`` and the folders under it (hidden ones left out, as by the snapshot); None: too many."""
    found = [top]
    for folder in found:
        if len(found) > MAX_DIRS:
            return None
        try:
            with os.scandir(folder) as it:
                subs = [Path(e.path) for e in it if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        found += sorted(p for p in subs if not p.name.startswith("."))
    return found


def inputs(
    nb_path: str | os.PathLike[str],
    files: Iterable[str],
    kernel: str | None,
    interpreter: str | None,
) -> list[str]:
    """What a build of ``nb_path`` came from besides the notebook and its folders.

    Parameters
    ----------
    nb_path
        The notebook.
    files
        The local and data files shipped, relative to the notebook's folder.
    kernel
        The kernelspec name the interpreter was found by (its ``kernel.json`` is watched).
    interpreter
        The interpreter probed (it and its ``sys.path`` folders are watched).
    """
    nb = Path(nb_path).resolve()
    paths = [nb.with_name(f"{nb.stem}.envpack.lock"), *(nb.parent / f for f in files)]
    from jupyter_core.paths import jupyter_config_path, jupyter_path

    from .config import CONFIG_FILE_NAMES

    for folder in jupyter_config_path():
        paths += [Path(folder, n + ext) for n in CONFIG_FILE_NAMES for ext in (".json", ".py")]
    if kernel:
        paths += [Path(f, kernel.lower(), "kernel.json") for f in jupyter_path("kernels")]
    if interpreter:
        paths += [Path(p) for p in _interpreter_paths(interpreter)]
    return [str(p) for p in paths]


def remember_build(
    nb_path: str | os.PathLike[str],
    settings: dict[str, Any],
    result: dict[str, Any],
    spec: Any,
    by_kernel: bool,
    events: Sequence[tuple[str, str, str]] = (),
) -> Path | None:
    """:func:`remember` a build of ``spec`` (an :class:`~jupyter_envpack.snapshot.EnvSpec`).

    ``by_kernel``: the interpreter was found through the notebook's (or the given) kernelspec,
    whose ``kernel.json`` is then watched too.
    """
    from .image.engine import engine_address

    files = [*spec.local_files, *(d.path for d in spec.data_files)]
    kernel = spec.kernel_name if by_kernel else None
    watched = inputs(nb_path, files, kernel, spec.interpreter or None)
    base = result.get("base_image")
    return remember(nb_path, settings, result, watched, engine_address(), base, events)


def replay(memo: Recalled, reporter: Any) -> None:
    """Report the remembered build's info and warning events again, then that it is unchanged."""
    from .events import ProgressEvent

    for stage, message, kind in memo.events:
        if not message.startswith("time: "):
            reporter(ProgressEvent(stage, message, kind))  # type: ignore[arg-type]
    reporter(ProgressEvent("build", "unchanged since the last build (no snapshot)", "info", 1.0))


def _interpreter_paths(interpreter: str) -> list[str]:
    from .snapshot.probe import probe_interpreter

    try:
        env = probe_interpreter(interpreter)  # the probe's in-process memo: no subprocess
    except Exception:
        return [interpreter]
    return [env.executable, interpreter, *[str(p) for p in env.raw.get("path", [])]]
