"""Local code a notebook reaches: imported modules and ``%run`` scripts beside it, scanned in turn.

Only what an import can reach is collected (``import pkg.sub`` → ``pkg/__init__.py`` and
``pkg/sub.py``, then what those import), never every ``.py`` under a folder (RELIABILITY L5, C8).
Files never leave the notebook's folder (no symlinks at all), hidden and secret-looking files are
never collected, and counts and sizes are capped with a warning.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath

from ..errors import NotebookError
from .sources import PathLiteral, scan_source
from .spec import Finding

MAX_LOCAL_FILE_BYTES = 5 * 2**20
"""A local module or script larger than this is not copied (and not scanned)."""
MAX_LOCAL_FILES = 500
MAX_LOCAL_BYTES = 50 * 2**20

SECRET_PATTERNS = (
    ".env",
    ".env.*",
    "*.env",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*.kdbx",
    "*.ovpn",
    "id_rsa*",
    "id_dsa*",
    "id_ecdsa*",
    "id_ed25519*",
    "*credentials*",
    "*secret*",
    ".netrc",
    "_netrc",
    ".pypirc",
    ".pgpass",
    ".htpasswd",
    "pip.conf",
    "jpserver-*.json",
)
"""File names (lower-cased) that are never put into an image, whatever asked for them."""


def looks_secret(name: str) -> bool:
    """True when a file name looks like it holds credentials or keys."""
    low = name.lower()
    return any(fnmatch(low, pattern) for pattern in SECRET_PATTERNS)


def hidden(rel: PurePosixPath) -> bool:
    """True when any part of a relative path is hidden (``.git``, ``.env``…) or a cache folder."""
    return any(p.startswith(".") or p == "__pycache__" for p in rel.parts)


def regular_inside(folder: Path, rel: PurePosixPath) -> os.stat_result | None:
    """``lstat`` of ``folder/rel`` when every part is a real (non-symlink) entry, else None."""
    current = folder
    st: os.stat_result | None = None
    for part in rel.parts:
        current = current / part
        try:
            st = current.lstat()
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            return None
    return st


def read_inside(folder: Path, rel: PurePosixPath, limit: int) -> bytes | None:
    """Bytes of ``folder/rel`` when it is a regular file reached without any symlink (no FIFO or
    device either) of at most ``limit`` bytes, else None (RELIABILITY B3, B4, L5)."""
    if regular_inside(folder, rel) is None:
        return None
    try:
        fd = os.open(folder / rel, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = fh.read(limit + 1)
    return data if len(data) <= limit else None


def exists_outside(folder: Path, text: str) -> bool:
    """True when ``text`` (absolute, ``~``, or ``../``) names something that exists."""
    try:
        os.lstat(folder / Path(text).expanduser())
    except (OSError, ValueError, RuntimeError):  # RuntimeError: ~unknown-user
        return False
    return True


def relative_inside(folder: Path, text: str) -> PurePosixPath | None:
    """``text`` as a normalised path relative to ``folder``; None when absolute or outside."""
    if not text or "\0" in text or "\n" in text or text.startswith(("/", "~")):
        return None
    norm = os.path.normpath(text.replace("\\", "/"))
    if norm == "." or norm.startswith(".."):
        return None
    return PurePosixPath(norm)


@dataclass
class LocalCode:
    """Local files found so far (relative posix path → absolute path) and what they need."""

    folder: Path
    is_stdlib: Callable[[str], bool]
    files: dict[str, Path] = field(default_factory=dict)
    tops: set[str] = field(default_factory=set)
    external: set[str] = field(default_factory=set)
    paths: list[PathLiteral] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    _bytes: int = 0
    _capped: bool = False
    _seen_modules: set[str] = field(default_factory=set)
    _calls: set[tuple[str, int, str]] = field(default_factory=set)

    def is_local_top(self, name: str) -> bool:
        """True when ``name`` is a module or package beside the notebook."""
        rel = PurePosixPath(name)
        return not hidden(rel) and (
            _kind(self.folder, PurePosixPath(f"{name}.py")) == "file"
            or _kind(self.folder, rel) == "dir"
        )

    def add_module(self, dotted: str, level: int = 0, package: str = "") -> None:
        """Collect the files of ``dotted`` (relative to ``package`` when ``level``) if local."""
        if (dotted, level, package) in self._calls:  # a notebook imports the same module often
            return
        self._calls.add((dotted, level, package))
        name = _absolute(dotted, level, package)
        if not name or not all(p.isidentifier() for p in name.split(".")):
            return
        top = name.split(".")[0]
        if level == 0 and self.is_stdlib(top):
            return
        if not self.is_local_top(top):
            self._symlinked(top)
            if level == 0:
                self.external.add(top)
            return
        self.tops.add(top)
        if name in self._seen_modules:
            return
        self._seen_modules.add(name)
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            rel = PurePosixPath(*parts[:i])
            if _kind(self.folder, rel) == "dir":
                if _kind(self.folder, rel / "__init__.py") == "file":
                    self._add_file(rel / "__init__.py", ".".join(parts[:i]))
            elif _kind(self.folder, rel.with_name(rel.name + ".py")) == "file":
                self._add_file(rel.with_name(rel.name + ".py"), ".".join(parts[: i - 1]))
                return
            else:
                return

    def _symlinked(self, top: str) -> None:
        for rel in (f"{top}.py", top):
            if (self.folder / rel).is_symlink() and rel not in self._seen_modules:
                self._seen_modules.add(rel)
                self.findings.append(
                    Finding(
                        "local-file-skipped",
                        f"{rel} is a symbolic link; it is not followed or copied",
                        hint="copy the real file beside the notebook",
                    )
                )

    def add_script(self, text: str, cell: int | None = None) -> None:
        """Collect a script that ``%run``/``%load``/``exec(open(...))`` names, and scan it."""
        rel = relative_inside(self.folder, text)
        if rel is None:
            if exists_outside(self.folder, text):
                self.findings.append(external_finding(text, cell, "script"))
            return
        if _kind(self.folder, rel) != "file":
            self.findings.append(
                Finding(
                    "missing-script",
                    f"the notebook runs {text!r}, which is not a file in the notebook's folder",
                    cell=cell,
                    hint="put the script beside the notebook (symbolic links are not followed)",
                )
            )
            return
        self._add_file(rel, "")

    def _add_file(self, rel: PurePosixPath, package: str) -> None:
        key = rel.as_posix()
        if key in self.files or self._capped:
            return
        if hidden(rel) or looks_secret(rel.name):
            self.findings.append(secret_finding(key))
            return
        st = regular_inside(self.folder, rel)
        if st is None or st.st_size > MAX_LOCAL_FILE_BYTES:
            self.findings.append(
                Finding(
                    "local-file-skipped",
                    f"{key} is a symbolic link, not a regular file, or larger than "
                    f"{MAX_LOCAL_FILE_BYTES // 2**20} MiB; not copied",
                    hint="copy the real file beside the notebook",
                )
            )
            return
        if len(self.files) >= MAX_LOCAL_FILES or self._bytes + st.st_size > MAX_LOCAL_BYTES:
            self._capped = True
            self.findings.append(
                Finding(
                    "local-files-capped",
                    f"the notebook's local code reaches more than {MAX_LOCAL_FILES} files or "
                    f"{MAX_LOCAL_BYTES // 2**20} MiB; the rest is not copied",
                    hint="split large local packages out and install them as distributions",
                )
            )
            return
        self.files[key] = self.folder / rel
        self._bytes += st.st_size
        self._scan(rel, package)

    def _scan(self, rel: PurePosixPath, package: str) -> None:
        try:
            with open(self.folder / rel, "rb") as fh:
                text = fh.read(MAX_LOCAL_FILE_BYTES).decode("utf-8", "replace")
            scans = [scan_source(src) for src in _python_sources(rel, text)]
        except (OSError, SyntaxError, ValueError, RecursionError, MemoryError, NotebookError):
            self.findings.append(
                Finding(
                    "unparseable-cell",
                    f"local file {rel} does not parse; its imports and data files were not analysed",
                )
            )
            return
        for scan in scans:
            for dotted, level in scan.modules:
                self.add_module(dotted, level, package)
            for mod in scan.run_modules:
                self.add_module(mod)
            for script in scan.scripts:
                self.add_script(script)
            self.paths += scan.paths


def _python_sources(rel: PurePosixPath, text: str) -> list[str]:
    """The Python source of a local file: itself, or the code cells of a ``%run`` notebook."""
    if rel.suffix != ".ipynb":
        return [text]
    from .notebook import code_cell_sources  # notebook.py imports this module

    return code_cell_sources(text.encode("utf-8"), rel.name)


def _absolute(dotted: str, level: int, package: str) -> str:
    if not level:
        return dotted
    base = package.split(".") if package else []
    if level - 1 > len(base):
        return ""
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, dotted] if dotted else base)


def _kind(folder: Path, rel: PurePosixPath) -> str | None:
    st = regular_inside(folder, rel)
    if st is None:
        return None
    return "file" if stat.S_ISREG(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode) else None


def secret_finding(rel: str) -> Finding:
    """The warning for a hidden or secret-looking file that was asked for and never collected."""
    return Finding(
        "secret-file-skipped",
        f"{rel} is hidden or looks like it holds secrets; it is never put into the image",
        hint="rename it if it holds no secret, or read the secret from the environment at run time",
    )


def external_finding(text: str, cell: int | None, what: str = "data file") -> Finding:
    """``external-data-file``: the notebook names a file outside its folder."""
    return Finding(
        "external-data-file",
        f"the notebook reads {text!r}, a {what} outside the notebook's folder; "
        "it is not in the image",
        cell=cell,
        hint="copy it into the notebook's folder and use a relative path",
    )
