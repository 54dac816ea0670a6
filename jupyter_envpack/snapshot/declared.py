"""What a repository declares it needs, read beside a notebook as hostile input (issue 13.2).

Sources, in this order: ``requirements*.txt``, ``pyproject.toml`` (``[project] dependencies``,
then the names of poetry's ``[tool.poetry.dependencies]``), ``setup.cfg``
(``[options] install_requires``), ``Pipfile`` (``[packages]``) and ``environment.yml`` (its ``pip:``
list, and its conda packages by name — a conda name counts only when a wheel of that name
exists on the index, which the reconstruction checks). Every file is read once, capped at
:data:`MAX_DECLARED_BYTES`, never through a symlink, and parsed with a data-only parser (tomllib,
``yaml.safe_load``, configparser): nothing is executed, ``setup.py`` is never run.
"""

from __future__ import annotations

import configparser
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement

from .localfiles import hidden, looks_secret, read_inside

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found, no-redef, unused-ignore]

MAX_DECLARED_BYTES = 256 * 2**10
"""A declaration file larger than this is ignored (no real one comes close)."""
MAX_DECLARED = 500
"""At most this many requirements are taken from one file."""
_REQ_FILES = re.compile(r"requirements[\w.-]*\.txt\Z")
_CONDA_SPEC = re.compile(r"(?:[\w.-]+::)?([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:(==?)\s*([\w.*]+))?")
CONDA_TO_PYPI: dict[str, str] = {
    "pytorch": "torch",
    "py-opencv": "opencv-python-headless",
    "matplotlib-base": "matplotlib",
    "pytables": "tables",
    "msgpack-python": "msgpack",
}
"""Conda package names whose PyPI distribution has another name; other names are taken as is."""
CONDA_ONLY = frozenset({"python", "pip", "setuptools", "wheel", "nodejs", "r-base", "cudatoolkit"})
"""Conda dependencies that are no Python distribution to install."""


def requirement(text: str) -> Requirement | None:
    """``text`` parsed as a PEP 508 requirement, or None."""
    try:
        return Requirement(text)
    except InvalidRequirement:
        return None


def read_small(folder: Path, name: str, limit: int = MAX_DECLARED_BYTES) -> str | None:
    """The text of ``folder/name`` when it is a regular file (no symlink) of at most ``limit``
    bytes, else None."""
    data = read_inside(folder, PurePosixPath(name), limit)
    return None if data is None else data.decode("utf-8", "replace")


def _valid(lines: Iterable[str]) -> list[str]:
    """PEP 508 requirements by name; options, URLs and VCS links (``x @ git+…``) are dropped:
    nothing the repository names is fetched from anywhere but the user's index."""
    out = []
    for line in lines:
        line = line.split("#", 1)[0].strip() if isinstance(line, str) else ""
        parsed = requirement(line) if line and not line.startswith("-") else None
        if parsed is not None and not parsed.url:
            out.append(line)
    return out[:MAX_DECLARED]


def _requirements_txt(text: str) -> list[str]:
    return _valid(text.splitlines())


def _pyproject(text: str) -> list[str]:
    data = tomllib.loads(text)
    project = data.get("project")
    deps = project.get("dependencies") if isinstance(project, dict) else None
    out = _valid(deps) if isinstance(deps, list) else []
    tool = data.get("tool")
    poetry = tool.get("poetry") if isinstance(tool, dict) else None
    table = poetry.get("dependencies") if isinstance(poetry, dict) else None
    if isinstance(table, dict):  # poetry's ^/~ constraints are not PEP 440: names only
        out += _valid(name for name in table if name.lower() != "python")
    return out[:MAX_DECLARED]


def _setup_cfg(text: str) -> list[str]:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read_string(text)
    value = parser.get("options", "install_requires", fallback="")
    return _valid(value.splitlines())


def _pipfile(text: str) -> list[str]:
    packages = tomllib.loads(text).get("packages")
    if not isinstance(packages, dict):
        return []
    out = []
    for name, spec in packages.items():
        version = spec.get("version") if isinstance(spec, dict) else spec
        pin = version if isinstance(version, str) and version.strip() not in {"", "*"} else ""
        out.append(f"{name}{pin}" if requirement(f"{name}{pin}") else str(name))
    return _valid(out)


def _environment_yml(text: str) -> list[str]:
    data = yaml.safe_load(text)
    deps = data.get("dependencies") if isinstance(data, dict) else None
    if not isinstance(deps, list):
        return []
    out: list[str] = []
    for dep in deps[: MAX_DECLARED * 2]:
        if isinstance(dep, dict) and isinstance(dep.get("pip"), list):
            out += _valid(dep["pip"])
        elif isinstance(dep, str):
            out += _conda(dep)
    return out[:MAX_DECLARED]


def _conda(spec: str) -> list[str]:
    """A conda spec (``conda-forge::numpy=1.21``) as a PyPI requirement, by name."""
    m = _CONDA_SPEC.fullmatch(spec.strip())
    if m is None or m.group(1).lower() in CONDA_ONLY or m.group(1).startswith("r-"):
        return []
    name = CONDA_TO_PYPI.get(m.group(1).lower(), m.group(1))
    op, version = m.group(2), m.group(3)
    if version and op == "=" and not version.endswith("*"):
        version += ".*"  # conda's single '=' is a prefix match
    return _valid([f"{name}=={version}" if version else name])


_READERS: list[tuple[str, Callable[[str], list[str]]]] = [
    ("pyproject.toml", _pyproject),
    ("setup.cfg", _setup_cfg),
    ("Pipfile", _pipfile),
    ("environment.yml", _environment_yml),
    ("environment.yaml", _environment_yml),
]


def declared_requirements(folder: Path) -> list[tuple[str, str]]:
    """``(requirement, file name)`` for everything the files beside a notebook declare.

    A file that is missing, a symlink, too large or malformed contributes nothing.
    """
    try:
        names = sorted(p.name for p in folder.iterdir())
    except OSError:
        return []
    readers = [(n, _requirements_txt) for n in names if _REQ_FILES.match(n)] + [
        (n, f) for n, f in _READERS if n in names
    ]
    out: list[tuple[str, str]] = []
    for name, reader in readers:
        if looks_secret(name) or hidden(PurePosixPath(name)):
            continue
        out += [(r, name) for r in _parsed(folder, name, reader)]
    return out


def _parsed(folder: Path, name: str, reader: Callable[[str], Any]) -> list[str]:
    text = read_small(folder, name)
    if text is None:
        return []
    try:
        return list(reader(text))
    except (ValueError, yaml.YAMLError, configparser.Error, RecursionError):
        return []  # malformed: tomllib/configparser/yaml errors are all "nothing declared"
