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
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.utils import canonicalize_name

from ..errors import InputError, ProbeError
from . import ReconstructOptions
from .declared import declared_requirements, requirement
from .index import IndexOptions
from .notebook import analyse_notebook
from .spec import EnvSpec, Finding, PinnedPackage

if TYPE_CHECKING:
    from . import SnapshotOptions

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
MAX_WHEEL_MEMBERS = 200_000
RUNNER = "ipykernel"
"""Added to every reconstruction so the image (or venv) can start a kernel (``reason: runner``)."""
BASE_PYTHONS = tuple(f"3.{minor}" for minor in range(8, 15))
"""Pythons with a default base image (``python:X.Y-slim``) that uv and ipykernel still support."""
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
    """An educated reconstruction of a notebook's environment (not what ran).

    ``as_of`` is the cut-off asked for and where it came from (``as_of_source``: ``option``,
    ``git-commit``, ``git-commit-bounded`` or ``mtime``); ``as_of_used`` the one that resolved
    (later when nothing resolved at ``as_of``). ``python_source`` says why that Python:
    ``option``, ``notebook`` (its ``language_info``), ``base-image`` (what the configured base
    runs) or ``kernel``.
    """

    python: str
    as_of: str
    as_of_used: str
    candidates: list[Candidate] = field(default_factory=list)
    pins: dict[str, str] = field(default_factory=dict)
    unresolved: list[str] = field(default_factory=list)
    as_of_source: str = "option"
    python_source: str = "option"
    declared: list[str] = field(default_factory=list)

    @property
    def date_moved(self) -> bool:
        """Whether the cut-off had to move forward for anything to resolve."""
        return self.as_of_used != self.as_of

    def chosen(self) -> dict[str, str]:
        """Import → the requirement chosen for it (the first verified candidate)."""
        return _first_verified(self.candidates)

    def imports(self) -> list[dict[str, Any]]:
        """Per import: the chosen requirement, the rejected candidates and why, the evidence."""
        chosen = self.chosen()
        out = []
        for module in dict.fromkeys(c.module for c in self.candidates):
            mine = [c for c in self.candidates if c.module == module]
            pick = chosen.get(module)
            out.append(
                {
                    "import": module,
                    "chosen": pick,
                    "rejected": [
                        {"name": c.requirement, "why": c.evidence} for c in mine if not c.verified
                    ],
                    "evidence": next((c.evidence for c in mine if c.requirement == pick), ""),
                }
            )
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON form; ``origin`` tells every reader this is a reconstruction."""
        return {
            "origin": "reconstructed",
            "python": self.python,
            "python_source": self.python_source,
            "as_of": self.as_of,
            "as_of_source": self.as_of_source,
            "as_of_used": self.as_of_used,
            "date_moved": self.date_moved,
            "pins": self.pins,
            "unresolved": self.unresolved,
            "declared": self.declared,
            "imports": self.imports(),
            "candidates": [asdict(c) for c in self.candidates],
        }

    def summary(self) -> str:
        """One line for every surface: plainly a reconstruction, with its date and Python."""
        moved = f" (nothing resolved at {self.as_of}: moved forward)" if self.date_moved else ""
        return (
            f"RECONSTRUCTED environment — an educated guess, not what ran: Python {self.python} "
            f"({self.python_source}), packages as of {self.as_of_used}{moved}, date from "
            f"{self.as_of_source}"
        )


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
    """Canonical name of ``req``; "" when it is no requirement or names a URL (never fetched)."""
    parsed = requirement(req)
    return canonicalize_name(parsed.name) if parsed and not parsed.url else ""


def wheel_provides(wheel: Path, module: str) -> str | None:
    """Evidence that ``wheel`` ships top-level ``module`` (a path in it), else None."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()[:MAX_WHEEL_MEMBERS]
    for name in names:
        top = name.split("/", 1)[0]
        if top == module or top in {f"{module}.py"} or re.match(rf"{re.escape(module)}\.\w", top):
            return name
    return None


def verify(candidates: list[Candidate], python: str, index: IndexOptions, tmp: Path) -> set[str]:
    """Fetch each distinct candidate's wheel once and check it provides the module.

    Returns the (canonical) names that have a wheel for ``python`` on the index.
    """
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
    return {key for key, got in wheels.items() if not isinstance(got, str)}


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
    """``uv pip compile --exclude-newer`` at ``as_of``; when nothing resolves, step forward by
    ``step_days`` (at once to the Python's first beta when that is later: :data:`FIRST_BETA`)
    until it does, then bisect back to within a week of the first day that does."""
    day = dt.date.fromisoformat(as_of)
    failed: dt.date | None = None
    last = ""
    while day <= dt.date.today() + dt.timedelta(days=1):
        pins, last = _compile(requirements, python, day, index)
        if pins is not None:
            break
        failed, day = day, max(day + dt.timedelta(days=step_days), _first_beta(python, day))
    else:
        raise ProbeError(
            f"nothing resolves for Python {python} up to today: {last}",
            hint="choose another --python-version or drop a candidate",
        )
    while failed is not None and (day - failed).days > 7:
        middle = failed + (day - failed) / 2
        found, _err = _compile(requirements, python, middle, index)
        if found is None:
            failed = middle
        else:
            pins, day = found, middle
    return pins, day.isoformat()


FIRST_BETA = {
    "3.8": "2019-06-04",
    "3.9": "2020-05-19",
    "3.10": "2021-05-03",
    "3.11": "2022-05-08",
    "3.12": "2023-05-22",
    "3.13": "2024-05-08",
    "3.14": "2025-05-07",
}
"""First beta of each Python: the runner (ipykernel needs compiled pyzmq) has no wheels for it
earlier, so a cut-off that fails before it jumps there instead of stepping through the years."""


def _first_beta(python: str, default: dt.date) -> dt.date:
    known = FIRST_BETA.get(python)
    return dt.date.fromisoformat(known) if known else default


def _compile(
    requirements: list[str], python: str, day: dt.date, index: IndexOptions
) -> tuple[dict[str, str] | None, str]:
    """Pins of ``requirements`` as of ``day`` with wheels for Linux, or ``(None, uv's error)``."""
    from ..execute.venv import uv_binary

    argv = [uv_binary(), "pip", "compile", "-", "--no-header", "--no-annotate", "--quiet"]
    argv += ["--python-version", python, "--exclude-newer", day.isoformat()]
    argv += ["--only-binary", ":all:", "--python-platform", f"{_machine()}-manylinux_2_28"]
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
        return _pins(proc.stdout), ""
    return None, proc.stderr.strip()[-500:]


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


def _machine() -> str:
    import platform

    return "aarch64" if platform.machine() in {"aarch64", "arm64"} else "x86_64"


def default_as_of(nb_path: Path) -> tuple[str, str]:
    """``(date, source)``: the notebook's last commit date (read with dulwich, bounded), else its
    modification time."""
    from ..share.gitrepo import last_change

    found = last_change(nb_path)
    if found is not None:
        when, exact = found
        source = "git-commit" if exact else "git-commit-bounded"
    else:
        when, source = int(nb_path.stat().st_mtime), "mtime"
    return dt.datetime.fromtimestamp(when, dt.timezone.utc).date().isoformat(), source


def default_python(nb: Any, base_image: str | None, kernel_python: str) -> tuple[str, str]:
    """``(X.Y, source)``: with a configured ``base_image``, the Python it runs (asked once per
    image id, when the engine has it) else the kernel's; without one, the notebook's
    ``language_info.version`` when a default base image exists for it (X.Y in
    :data:`BASE_PYTHONS`), else the kernel's."""
    if base_image is not None:
        found = _base_python(base_image)
        return (found, "base-image") if found else (kernel_python, "kernel")
    version = str(nb.get("metadata", {}).get("language_info", {}).get("version") or "")
    m = re.match(r"(3\.\d+)", version)
    if m and m.group(1) in BASE_PYTHONS:
        return m.group(1), "notebook"
    return kernel_python, "kernel"


def _base_python(image: str) -> str | None:
    """X.Y of ``image``'s python3 when an engine answers and has the image, else None."""
    try:
        from ..image.engine import connect
        from ..image.wheels import base_runtime

        python = base_runtime(connect(), image)[1]
    except Exception:  # no engine here: the reconstruction still works, for the kernel's Python
        return None
    return ".".join(python.split(".")[:2]) if python else None


def reconstruct(
    path: str | os.PathLike[str],
    modules: list[str] | None = None,
    python: str | None = None,
    as_of: str | None = None,
    index: IndexOptions | None = None,
    base_image: str | None = None,
    kernel_python: str | None = None,
) -> Reconstruction:
    """Reconstruct the environment of the notebook at ``path`` as of ``as_of``.

    ``as_of`` defaults to the notebook's last commit date, else its mtime (:func:`default_as_of`);
    ``modules`` to every top-level import that is not local code; ``python`` (X.Y) to
    :func:`default_python` (``kernel_python`` defaults to this interpreter's X.Y). Raises
    :class:`ProbeError` when nothing resolves.
    """
    nb_path = Path(path)
    analysis, nb = analyse_notebook(nb_path)
    kernel_python = kernel_python or f"{sys.version_info[0]}.{sys.version_info[1]}"
    python, python_source = (
        (python, "option") if python else default_python(nb, base_image, kernel_python)
    )
    if modules is None:
        modules = third_party_imports(nb_path, analysis)
    as_of, as_of_source = (as_of, "option") if as_of else default_as_of(nb_path)
    _check_date(as_of)
    index = index or IndexOptions()
    pip_lines = [r for r, _cell in analysis.pip_requirements]
    declared_pairs = declared_requirements(nb_path.parent)
    candidates = candidates_for(modules, declared_pairs, pip_lines)
    with tempfile.TemporaryDirectory(prefix="envpack-reconstruct-") as tmp:
        on_index = verify(candidates, python, index, Path(tmp))
    chosen = _first_verified(candidates)
    unresolved = [m for m in modules if m not in chosen]
    # what the repository declares is kept too, when a wheel of it exists (conda-only names fall)
    declared = sorted({r for r, _src in declared_pairs if _name(r) in on_index})
    reqs = sorted({*chosen.values(), *declared, RUNNER})
    pins, used = resolve_as_of(reqs, python, as_of, index)
    return Reconstruction(
        python, as_of, used, candidates, pins, unresolved, as_of_source, python_source, declared
    )


def third_party_imports(nb_path: Path, analysis: Any) -> list[str]:
    """Top-level imports of the notebook and of the local code it reaches, minus the standard
    library and the local modules themselves."""
    from . import local_code

    stdlib = _stdlib()
    code = local_code(nb_path.parent, analysis, lambda module: module in stdlib)
    direct = {u.module for u in analysis.imports if not u.local_hint}
    return sorted((direct | code.external) - code.tops - stdlib)


def _check_date(text: str) -> None:
    try:
        dt.date.fromisoformat(text if _DATE.match(text) else "")
    except ValueError:
        raise InputError(f"invalid date {text[:40]!r}", hint="use YYYY-MM-DD") from None


def _first_verified(candidates: list[Candidate]) -> dict[str, str]:
    chosen: dict[str, str] = {}
    for c in candidates:
        if c.verified and c.module not in chosen:
            chosen[c.module] = c.requirement
    return chosen


def _stdlib() -> set[str]:
    return set(sys.stdlib_module_names) | {"__future__"}


def reconstructed_spec(
    path: str | os.PathLike[str],
    ropts: ReconstructOptions,
    options: SnapshotOptions,
    kernel: str | None = None,
    python: str | None = None,
) -> EnvSpec:
    """The notebook's :class:`EnvSpec` with reconstructed pins (``origin: "reconstructed"``).

    Local code and data files are found as for a lock file; a ``reconstructed`` warning says on
    every surface that this is an educated guess, not what ran. ``kernel``/``python`` only give
    the default Python (see :func:`default_python`).
    """
    from .lock import Lock, snapshot_from_lock

    rec = reconstruct(
        path,
        python=ropts.python,
        as_of=ropts.as_of,
        index=options.index,
        base_image=ropts.base_image,
        kernel_python=None if ropts.python else _kernel_python(path, kernel, python),
    )
    lock = Lock(rec.python, _packages(rec), origin="reconstructed", as_of=rec.as_of_used)
    spec = snapshot_from_lock(path, lock, options)
    spec.warnings = [
        Finding("reconstructed", rec.summary(), hint="check the pins; `--as-of` sets the date"),
        *(w for w in spec.warnings if w.code != "lock-drift"),
        *(
            Finding("unresolved-import", f"no distribution on the index provides {m}")
            for m in rec.unresolved
        ),
    ]
    spec.origin, spec.reconstruction = "reconstructed", rec.to_json()
    return spec


def _packages(rec: Reconstruction) -> list[PinnedPackage]:
    chosen = rec.chosen()
    out = []
    for name, version in sorted(rec.pins.items()):
        modules = tuple(sorted(m for m, req in chosen.items() if _name(req) == name))
        reason = "runner" if name == RUNNER and not modules else None
        out.append(PinnedPackage(name, version, bool(modules), modules, reason))
    return out


def _kernel_python(path: str | os.PathLike[str], kernel: str | None, python: str | None) -> str:
    """X.Y of the kernel's interpreter (the one a snapshot would probe)."""
    from . import select_interpreter

    interpreter = select_interpreter(python, kernel, analyse_notebook(Path(path))[0].kernel_name)[0]
    if interpreter == sys.executable:
        return f"{sys.version_info[0]}.{sys.version_info[1]}"
    argv = [interpreter, "-I", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ProbeError(
            f"cannot ask {interpreter} its version: {exc}", hint="give --python-version X.Y"
        ) from exc
    return out.strip()
