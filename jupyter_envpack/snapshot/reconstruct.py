"""Reconstruct an environment that is gone (issue 13.2, skeleton): candidates → verified → pinned.

For each import the kernel cannot resolve: candidates from the requirements files beside the
notebook, the notebook's ``%pip`` lines, then the import name and a maintained alias map. Every
candidate is verified on its wheel (downloaded with the user's pip settings, ``--no-deps``): it must
ship the module (``RECORD``/``top_level.txt``/file names). The verified ones are resolved with
``uv pip compile --exclude-newer DATE`` for the chosen Python; when nothing resolves at DATE the
cut-off moves forward and the date used is reported. The result says plainly that it is an educated
reconstruction (``origin: "reconstructed"``), not what ran.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ..errors import ProbeError
from .index import IndexOptions
from .localfiles import hidden, looks_secret, regular_inside
from .notebook import analyse_notebook

ALIASES: dict[str, str] = {
    "sklearn": "scikit-learn",
    "cv2": "opencv-python-headless",
    "PIL": "Pillow",
    "yaml": "PyYAML",
    "bs4": "beautifulsoup4",
    "skimage": "scikit-image",
    "dateutil": "python-dateutil",
    "dotenv": "python-dotenv",
    "Crypto": "pycryptodome",
    "OpenSSL": "pyOpenSSL",
    "jwt": "PyJWT",
    "serial": "pyserial",
    "attr": "attrs",
    "Bio": "biopython",
    "mpl_toolkits": "matplotlib",
    "google": "protobuf",
    "fitz": "PyMuPDF",
    "docx": "python-docx",
    "magic": "python-magic",
    "tables": "tables",
}
"""Import name → distribution, for the names that differ (checked like every other candidate)."""
MAX_REQUIREMENTS_BYTES = 256 * 2**10
MAX_WHEEL_MEMBERS = 200_000
_REQ_FILES = re.compile(r"requirements[\w.-]*\.txt\Z")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")


@dataclass
class Candidate:
    """One distribution that may provide ``module``, where the idea came from and the verdict."""

    module: str
    requirement: str
    source: str  # requirements file name, "%pip", "import-name" or "alias"
    verified: bool | None = None
    evidence: str = ""


@dataclass
class Reconstruction:
    """An educated reconstruction of a notebook's environment (not what ran)."""

    python: str
    as_of: str
    as_of_used: str
    candidates: list[Candidate] = field(default_factory=list)
    pins: dict[str, str] = field(default_factory=dict)
    unresolved: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """JSON form; ``origin`` tells every reader this is a reconstruction."""
        return {
            "origin": "reconstructed",
            "python": self.python,
            "as_of": self.as_of,
            "as_of_used": self.as_of_used,
            "pins": self.pins,
            "unresolved": self.unresolved,
            "candidates": [asdict(c) for c in self.candidates],
        }


def declared_requirements(folder: Path) -> list[tuple[str, str]]:
    """``(requirement, file name)`` from ``requirements*.txt`` beside the notebook (bounded, no
    symlinks, no options or includes: those lines are ignored)."""
    out: list[tuple[str, str]] = []
    for entry in sorted(p.name for p in folder.iterdir()):
        if not _REQ_FILES.match(entry) or looks_secret(entry) or hidden(PurePosixPath(entry)):
            continue
        text = _read_small(folder, entry)
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-") and _requirement(line):
                out.append((line, entry))
    return out


def _read_small(folder: Path, name: str) -> str:
    if regular_inside(folder, PurePosixPath(name)) is None:
        return ""
    fd = os.open(folder / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return fh.read(MAX_REQUIREMENTS_BYTES).decode("utf-8", "replace")


def _requirement(text: str) -> Requirement | None:
    try:
        return Requirement(text)
    except InvalidRequirement:
        return None


def candidates_for(
    modules: list[str], declared: list[tuple[str, str]], pip_lines: list[str]
) -> list[Candidate]:
    """Candidates per module, in order of evidence: declared, ``%pip``, alias, import name."""
    offered = [*declared, *((p, "%pip") for p in pip_lines)]
    out: list[Candidate] = []
    for module in modules:
        seen: set[str] = set()
        alias = ALIASES.get(module)
        names = {canonicalize_name(module), *([canonicalize_name(alias)] if alias else [])}
        ordered = [(r, s) for r, s in offered if _name(r) in names]
        ordered += [(r, s) for r, s in offered if _name(r) not in names]
        ordered += [(alias, "alias")] if alias else []
        ordered.append((module, "import-name"))
        for req, source in ordered:
            key = _name(req)
            if key and key not in seen:
                seen.add(key)
                out.append(Candidate(module, req, source))
    return out


def _name(req: str) -> str:
    parsed = _requirement(req)
    return canonicalize_name(parsed.name) if parsed else ""


def wheel_provides(wheel: Path, module: str) -> str | None:
    """Evidence that ``wheel`` ships top-level ``module`` (a path in it), else None."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()[:MAX_WHEEL_MEMBERS]
    for name in names:
        top = name.split("/", 1)[0]
        if top == module or top in {f"{module}.py"} or re.match(rf"{re.escape(module)}\.\w", top):
            return name
    return None


def verify(candidates: list[Candidate], python: str, index: IndexOptions, tmp: Path) -> None:
    """Fetch each distinct candidate's wheel once and check it provides the module."""
    wheels: dict[str, Path | str] = {}
    for c in candidates:
        key = _name(c.requirement)
        if key not in wheels:
            wheels[key] = _download(c.requirement, python, index, tmp / key)
        got = wheels[key]
        if isinstance(got, str):
            c.verified, c.evidence = False, got
            continue
        found = wheel_provides(got, c.module)
        c.verified = found is not None
        c.evidence = f"{got.name} ships {found}" if found else f"{got.name} has no {c.module}"


def _download(req: str, python: str, index: IndexOptions, folder: Path) -> Path | str:
    folder.mkdir(parents=True)
    argv = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q"]
    argv += ["--python-version", python, "-d", str(folder), req]
    env = {**os.environ, **index.environment(), "PIP_NO_INPUT": "1"}
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600, check=False)
    found = sorted(folder.glob("*.whl"))
    if proc.returncode != 0 or not found:
        last = (proc.stderr.strip().splitlines() or ["no wheel"])[-1]
        return f"no wheel for Python {python}: {last[:300]}"
    return found[0]


def resolve_as_of(
    requirements: list[str], python: str, as_of: str, index: IndexOptions, step_days: int = 180
) -> tuple[dict[str, str], str]:
    """``uv pip compile --exclude-newer`` at ``as_of``, moving forward until it resolves."""
    from ..execute.venv import uv_binary

    day = dt.date.fromisoformat(as_of)
    last = ""
    while day <= dt.date.today() + dt.timedelta(days=1):
        argv = [uv_binary(), "pip", "compile", "-", "--no-header", "--no-annotate", "--quiet"]
        argv += ["--python-version", python, "--exclude-newer", day.isoformat()]
        proc = subprocess.run(
            argv,
            input="\n".join(requirements),
            capture_output=True,
            text=True,
            env=_uv_env(index),
            timeout=600,
            check=False,
        )
        if proc.returncode == 0:
            return _pins(proc.stdout), day.isoformat()
        last = proc.stderr.strip()[-500:]
        day += dt.timedelta(days=step_days)
    raise ProbeError(
        f"nothing resolves for Python {python} up to today: {last}",
        hint="choose another --python-version or drop a candidate",
    )


def _uv_env(index: IndexOptions) -> dict[str, str]:
    env = {**os.environ, "UV_NO_CONFIG": "1", "UV_NATIVE_TLS": "1"}
    url = index.index_url or os.environ.get("PIP_INDEX_URL")
    if url:
        env["UV_DEFAULT_INDEX"] = url
    if index.extra_index_urls:
        env["UV_INDEX"] = " ".join(index.extra_index_urls)
    if index.ca_bundle:
        env["SSL_CERT_FILE"] = str(Path(index.ca_bundle).resolve())
    return env


def _pins(text: str) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and name and not name.startswith("#"):
            pins[str(canonicalize_name(name))] = version.split(";")[0].strip()
    return pins


def reconstruct(
    path: str | os.PathLike[str],
    modules: list[str] | None = None,
    python: str | None = None,
    as_of: str | None = None,
    index: IndexOptions | None = None,
) -> Reconstruction:
    """Reconstruct the environment of the notebook at ``path`` as of ``as_of`` (default: mtime).

    ``modules`` defaults to every top-level import that is not local code; ``python`` (X.Y) to
    the notebook's ``language_info.version``, else this interpreter's. Raises
    :class:`ProbeError` when nothing resolves.
    """
    nb_path = Path(path)
    analysis, nb = analyse_notebook(nb_path)
    python = python or _notebook_python(nb)
    if modules is None:
        modules = sorted({u.module for u in analysis.imports if not u.local_hint} - _stdlib())
    if as_of is None:
        mtime = nb_path.stat().st_mtime
        as_of = dt.datetime.fromtimestamp(mtime, dt.timezone.utc).date().isoformat()
    if not _DATE.match(as_of):
        raise ProbeError(f"invalid date {as_of!r}", hint="use YYYY-MM-DD")
    index = index or IndexOptions()
    pip_lines = [r for r, _cell in analysis.pip_requirements]
    candidates = candidates_for(modules, declared_requirements(nb_path.parent), pip_lines)
    with tempfile.TemporaryDirectory(prefix="envpack-reconstruct-") as tmp:
        verify(candidates, python, index, Path(tmp))
    chosen = _first_verified(candidates)
    unresolved = [m for m in modules if m not in chosen]
    declared = [r for r, _src in declared_requirements(nb_path.parent)]
    reqs = sorted({*chosen.values(), *declared})  # what the repository declares is kept too
    pins, used = resolve_as_of(reqs, python, as_of, index) if reqs else ({}, as_of)
    return Reconstruction(python, as_of, used, candidates, pins, unresolved)


def _notebook_python(nb: Any) -> str:
    version = str(nb.get("metadata", {}).get("language_info", {}).get("version") or "")
    m = re.match(r"(3\.\d+)", version)
    return m.group(1) if m else f"{sys.version_info[0]}.{sys.version_info[1]}"


def _first_verified(candidates: list[Candidate]) -> dict[str, str]:
    chosen: dict[str, str] = {}
    for c in candidates:
        if c.verified and c.module not in chosen:
            chosen[c.module] = c.requirement
    return chosen


def _stdlib() -> set[str]:
    return set(sys.stdlib_module_names)
