"""``<stem>.envpack.lock`` beside a notebook: the snapshot's pins, committed and reviewed.

The file is pip's requirements format (``pip install --require-hashes -r`` accepts it when every
pin has a hash) with envpack's facts in ``# key: value`` header comments::

    # envpack.lock/1 for analysis.ipynb — written by `jupyter envpack lock`; review it like code
    # python: 3.11.2
    # kernel: python3
    # base-image: python:3.11-slim
    # base-image-id: sha256:3f5a…
    numpy==1.26.4 --hash=sha256:… # imports: numpy
    six==1.16.0

When the lock file exists, ``snapshot``/``build``/``run`` (and the pytest plugin) take the pins
from it instead of probing a kernel, so CI rebuilds what the author had without the author's
kernel, and warn (``lock-drift``) when the notebook's imports no longer match it.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from .spec import EnvSpec, Finding, PinnedPackage

if TYPE_CHECKING:
    from . import SnapshotOptions
    from .probe import Environment

LOCK_SCHEMA = "envpack.lock/1"
LOCK_SUFFIX = ".envpack.lock"
MAX_LOCK_BYTES = 1 << 20
_HEADER = re.compile(r"^#\s*([a-z-]+):\s*(.*?)\s*$")
_PIN = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>[A-Za-z0-9.+!_-]+)"
    r"(?P<hashes>(?:\s+--hash=sha256:[0-9a-f]{64})*)\s*"
    r"(?:#\s*(?:imports:\s*(?P<modules>[\w., ]*?))?\s*(?:why:\s*(?P<why>[a-z-]+))?)?\s*$"
)
_HASH = re.compile(r"--hash=sha256:([0-9a-f]{64})")
_REGENERATE = "regenerate it with `jupyter envpack lock NOTEBOOK`"


@dataclass
class Lock:
    """A parsed lock file."""

    python_version: str
    packages: list[PinnedPackage] = field(default_factory=list)
    hashes: dict[str, list[str]] = field(default_factory=dict)
    kernel: str | None = None
    base_image: str | None = None
    base_image_id: str | None = None
    origin: str | None = None
    """``reconstructed`` when the pins are an educated reconstruction (``# origin:`` header)."""
    as_of: str | None = None
    """The reconstruction's package date (``# as-of:`` header)."""

    def dumps(self, notebook_name: str) -> str:
        """The file's text (stable: same lock, same bytes)."""
        lines = [
            f"# {LOCK_SCHEMA} for {notebook_name} — written by `jupyter envpack lock`; "
            "review it like code",
            f"# python: {self.python_version}",
        ]
        if self.origin == "reconstructed":
            lines.append(
                "# RECONSTRUCTED: an educated guess of the environment, not what ran "
                "(`snapshot --reconstruct`)"
            )
        for key, value in (
            ("origin", self.origin),
            ("as-of", self.as_of),
            ("kernel", self.kernel),
            ("base-image", self.base_image),
            ("base-image-id", self.base_image_id),
        ):
            if value:
                lines.append(f"# {key}: {value}")
        for p in sorted(self.packages, key=lambda p: p.name.lower()):
            line = p.requirement + "".join(
                f" --hash=sha256:{h}" for h in sorted(self.hashes.get(p.name, []))
            )
            notes = [f"imports: {', '.join(p.modules)}"] if p.requested and p.modules else []
            notes += [f"why: {p.reason}"] if p.reason else []
            lines.append(line + (f" # {' '.join(notes)}" if notes else ""))
        return "\n".join(lines) + "\n"


def lock_path(nb_path: str | os.PathLike[str]) -> Path:
    """``<stem>.envpack.lock`` beside the notebook."""
    p = Path(nb_path)
    return p.with_name(p.stem + LOCK_SUFFIX)


def parse_lock(text: str, name: str = "lock file") -> Lock:
    """Parse a lock file's text or raise :class:`InputError` naming the bad line."""
    headers: dict[str, str] = {}
    packages: list[PinnedPackage] = []
    hashes: dict[str, list[str]] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        header = _HEADER.match(line)
        if header:
            headers[header.group(1)] = header.group(2)
            continue
        if line.startswith("#"):
            continue
        pin = _PIN.match(line)
        if pin is None:
            raise InputError(
                f"{name}, line {number}: not a `name==version` pin: {line[:200]!r}",
                hint=_REGENERATE,
            )
        modules = tuple(m.strip() for m in (pin.group("modules") or "").split(",") if m.strip())
        packages.append(
            PinnedPackage(pin["name"], pin["version"], bool(modules), modules, pin["why"])
        )
        if pin.group("hashes"):
            hashes[pin["name"]] = _HASH.findall(pin.group("hashes"))
    if "python" not in headers:
        raise InputError(f"{name} names no Python version", hint=_REGENERATE)
    return Lock(
        python_version=headers["python"],
        packages=packages,
        hashes=hashes,
        kernel=headers.get("kernel"),
        base_image=headers.get("base-image"),
        base_image_id=headers.get("base-image-id"),
        origin=headers.get("origin"),
        as_of=headers.get("as-of"),
    )


def read_lock(path: str | os.PathLike[str]) -> Lock:
    """Read (at most 1 MiB of) a lock file that is a regular file, not a symlink."""
    p = Path(path)
    if p.is_symlink() or not p.is_file():
        raise InputError(f"{p} is not a regular file", hint=f"remove it, then {_REGENERATE}")
    with open(p, "rb") as fh:
        data = fh.read(MAX_LOCK_BYTES + 1)
    if len(data) > MAX_LOCK_BYTES:
        raise InputError(f"{p} is larger than 1 MiB", hint=_REGENERATE)
    return parse_lock(data.decode("utf-8", "replace"), name=p.name)


def write_lock(nb_path: str | os.PathLike[str], lock: Lock) -> Path:
    """Write the lock beside the notebook through a new temporary file (never through a symlink)."""
    target = lock_path(nb_path)
    if target.is_symlink():
        raise InputError(f"{target} is a symbolic link", hint=f"remove it, then {_REGENERATE}")
    fd, tmp = tempfile.mkstemp(prefix=".envpack-lock-", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(lock.dumps(Path(nb_path).name))
            os.fchmod(fh.fileno(), 0o644)  # reviewable like the notebook itself
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def lock_from_spec(
    spec: EnvSpec,
    hashes: dict[str, list[str]] | None = None,
    base_image: str | None = None,
    base_image_id: str | None = None,
) -> Lock:
    """The lock of a snapshot."""
    return Lock(
        python_version=spec.python_version,
        packages=list(spec.packages),
        hashes=dict(hashes or {}),
        kernel=spec.kernel_name,
        base_image=base_image,
        base_image_id=base_image_id,
        origin="reconstructed" if spec.reconstructed else None,
        as_of=(spec.reconstruction or {}).get("as_of_used") if spec.reconstructed else None,
    )


def snapshot_from_lock(
    nb_path: str | os.PathLike[str], lock: Lock, options: SnapshotOptions | None = None
) -> EnvSpec:
    """The notebook's :class:`EnvSpec` with the lock's pins (no kernel is probed).

    Local code and data files are found as in a snapshot; imports that no locked distribution
    provides, and locked imports the notebook no longer makes, are ``lock-drift`` warnings.
    """
    from . import SnapshotOptions, local_code
    from .datafiles import find_data_files
    from .notebook import analyse_notebook

    options = options or SnapshotOptions()
    path = Path(nb_path)
    analysis, _nb = analyse_notebook(path)
    folder = path.parent if str(path.parent) else Path()
    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    code = local_code(folder, analysis, lambda module: module in stdlib)
    imported = {
        u.module
        for u in analysis.imports
        if u.module not in stdlib and u.module not in code.tops and not u.local_hint
    } | (code.external - code.tops)
    literals = [*analysis.paths, *((lit, None) for lit in code.paths)]
    data, findings = find_data_files(folder, literals, path.name, set(code.files), options.data)
    locked = {m for p in lock.packages for m in p.modules}
    provided = locked | {p.name.lower().replace("-", "_") for p in lock.packages}
    drift = [
        _drift(f"the notebook imports {m}, which the lock file does not pin")
        for m in sorted(imported - provided)
    ] + [
        _drift(f"the lock file pins {m} for an import the notebook dropped")
        for m in sorted(locked - imported)
    ]
    return EnvSpec(
        notebook=str(path),
        python_version=lock.python_version,
        packages=sorted(lock.packages, key=lambda p: p.name.lower()),
        local_files=sorted(code.files),
        data_files=data,
        warnings=[*analysis.findings, *code.findings, *findings, *drift],
        interpreter="",
        kernel_name=lock.kernel,
        origin="reconstructed" if lock.origin == "reconstructed" else "lock",
    )


def _drift(message: str) -> Finding:
    return Finding("lock-drift", message, hint=_REGENERATE)


def snapshot_or_lock(
    nb_path: str | os.PathLike[str],
    python: str | None = None,
    kernel: str | None = None,
    use_lock: bool = True,
    options: SnapshotOptions | None = None,
    probe: Environment | None = None,
    max_bytes: int | None = None,
) -> tuple[EnvSpec, Lock | None]:
    """A reconstruction when ``options.reconstruct`` is set; else the lock file's spec when
    ``use_lock`` and it exists; else a snapshot of the kernel (``probe``: its environment probed
    already; ``max_bytes``: the notebook's size limit)."""
    if options is not None and options.reconstruct is not None:
        from .reconstruct import reconstructed_spec

        return reconstructed_spec(nb_path, options.reconstruct, options, kernel, python), None
    path = lock_path(nb_path)
    if use_lock and (path.exists() or path.is_symlink()):
        lock = read_lock(path)
        return snapshot_from_lock(nb_path, lock, options), lock
    from . import take_snapshot
    from .notebook import DEFAULT_MAX_BYTES

    limit = DEFAULT_MAX_BYTES if max_bytes is None else max_bytes
    return take_snapshot(nb_path, python, kernel, probe, limit, options), None
