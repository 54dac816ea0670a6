"""Data files a notebook reads: path literals that name files or folders beside it.

A literal is a data file when it names an existing regular file or folder under the notebook's
folder, reached without any symbolic link; folders are shipped whole (minus hidden, cache and
secret-looking files and the notebook's own outputs). ``--include``/``--exclude`` globs add or drop
files; a total-size cap keeps images sane (``large-data-files``). Absolute paths and paths that
leave the folder are warned about (``external-data-file``), never shipped.
"""

from __future__ import annotations

import itertools
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath

from .localfiles import (
    exists_outside,
    external_finding,
    hidden,
    looks_secret,
    regular_inside,
    relative_inside,
    secret_finding,
)
from .sources import PathLiteral
from .spec import DataFile, Finding

DEFAULT_MAX_DATA_BYTES = 200 * 2**20
"""Total size of the data files shipped in an image unless configured (``max_data_bytes``)."""
MAX_DATA_FILES = 10_000
MAX_VISITED = 100_000
"""Entries looked at while walking folders; beyond it the walk stops (a huge tree is not shipped)."""

_SYSTEM_ROOTS = (
    "/usr",
    "/etc",
    "/proc",
    "/sys",
    "/dev",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/var",
    "/run",
    "/boot",
    "/snap",
)


@dataclass(frozen=True)
class DataOptions:
    """What data files to ship: size cap, extra globs to include, globs to exclude."""

    max_bytes: int = DEFAULT_MAX_DATA_BYTES
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


@dataclass
class _Collector:
    folder: Path
    notebook: str
    options: DataOptions
    skip: set[str]
    files: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    total: int = 0
    dropped: int = 0
    dropped_bytes: int = 0
    visited: int = 0
    _warned: set[str] = field(default_factory=set)
    _literals: set[str] = field(default_factory=set)

    def excluded(self, rel: PurePosixPath) -> bool:
        key = rel.as_posix()
        parents = [p.as_posix() for p in rel.parents if p.as_posix() != "."]
        return any(fnmatch(k, g) for g in self.options.exclude for k in (key, *parents))

    def literal(self, lit: PathLiteral, cell: int | None) -> None:
        key = f"{lit.prefix}:{lit.text}"
        if key in self._literals:
            return
        self._literals.add(key)
        rel = relative_inside(self.folder, lit.text)
        if rel is not None and any(c in lit.text for c in "*?[") and "**" not in lit.text:
            for match in _included(self.folder, [rel.as_posix()]):
                self.entry(match)
            return
        if rel is None:
            self._external(lit.text, cell)
            return
        if lit.prefix and not lit.text.endswith("/"):
            directory, start = rel.parent, rel.name
        else:
            directory, start = rel, ""
        if start:
            for child in self._children(directory):
                if child.name.startswith(start):
                    self.entry(child)
        elif directory.as_posix() != ".":
            self.entry(directory)

    def _children(self, directory: PurePosixPath) -> list[PurePosixPath]:
        if directory.as_posix() != "." and regular_inside(self.folder, directory) is None:
            return []
        try:
            names = sorted(p.name for p in (self.folder / directory).iterdir())
        except OSError:
            return []
        return [directory / n for n in names]

    def entry(self, rel: PurePosixPath) -> None:
        """Add a file, or every file under a folder (no symlink followed)."""
        self.visited += 1
        if self.visited > MAX_VISITED:
            if self.visited == MAX_VISITED + 1:
                self.dropped += 1  # counted once: the large-data-files warning names the cap
            return
        st = regular_inside(self.folder, rel)
        if st is None or self.excluded(rel) or rel.as_posix() in self.skip:
            return
        if hidden(rel) or looks_secret(rel.name):
            self._secret(rel)
        elif stat.S_ISREG(st.st_mode):
            self._file(rel, st.st_size)
        elif stat.S_ISDIR(st.st_mode):
            for child in self._children(rel):
                if not hidden(child):  # .git, .ipynb_checkpoints: silently never
                    self.entry(child)

    def _file(self, rel: PurePosixPath, size: int) -> None:
        key = rel.as_posix()
        if key in self.files or key == self.notebook or key.endswith(".envpack.ipynb"):
            return
        if len(self.files) >= MAX_DATA_FILES or self.total + size > self.options.max_bytes:
            self.dropped += 1
            self.dropped_bytes += size
            return
        self.files[key] = size
        self.total += size

    def _secret(self, rel: PurePosixPath) -> None:
        if rel.as_posix() not in self._warned:
            self._warned.add(rel.as_posix())
            self.findings.append(secret_finding(rel.as_posix()))

    def _external(self, text: str, cell: int | None) -> None:
        try:
            path = os.path.normpath(self.folder / Path(text).expanduser())
        except RuntimeError:  # ~unknown-user
            return
        if not path.startswith("/") or text in self._warned:
            return
        if any(path == r or path.startswith(r + "/") for r in _SYSTEM_ROOTS) or path == "/":
            return
        if not exists_outside(self.folder, text):
            return
        self._warned.add(text)
        self.findings.append(external_finding(text, cell))


def _included(folder: Path, globs: Iterable[str]) -> Iterator[PurePosixPath]:
    for pattern in globs:
        if relative_inside(folder, pattern) is None:
            continue
        try:
            matches = sorted(itertools.islice(folder.glob(pattern), MAX_VISITED))
        except (ValueError, OSError):
            continue  # an invalid pattern
        for match in matches:
            yield PurePosixPath(match.relative_to(folder).as_posix())


def find_data_files(
    folder: Path,
    literals: Iterable[tuple[PathLiteral, int | None]],
    notebook: str,
    skip: set[str],
    options: DataOptions | None = None,
) -> tuple[list[DataFile], list[Finding]]:
    """The data files named by ``literals`` (and ``--include`` globs), minus ``skip``.

    Parameters
    ----------
    folder
        The notebook's folder (the kernel's working directory).
    literals
        Path-like literals with the cell they come from (None: a local module or script).
    notebook
        The notebook's file name (never a data file of itself).
    skip
        Relative paths already shipped as local code.
    options
        Size cap and include/exclude globs.
    """
    folder = folder.resolve()
    col = _Collector(folder, notebook, options or DataOptions(), skip)
    for lit, cell in literals:
        col.literal(lit, cell)
    for rel in _included(folder, col.options.include):
        col.entry(rel)
    if col.dropped:
        col.findings.append(
            Finding(
                "large-data-files",
                f"{col.dropped} data files ({col.dropped_bytes / 2**20:.1f} MiB) are not in the "
                f"image: the data files reach the {col.options.max_bytes / 2**20:.0f} MiB cap",
                hint="drop what the notebook does not need with --exclude GLOB, or raise "
                "c.EnvPack.max_data_bytes (--max-data-bytes)",
            )
        )
    files = [DataFile(path, size) for path, size in sorted(col.files.items())]
    return files, col.findings
