"""Check the promise inside the artefact: the distributions in a built image's environment.

After each build a short, labelled, network-less container runs the environment's own Python and
lists its distributions with :mod:`importlib.metadata`; they must be exactly the lock. Its Python
version is compared with the kernel's: another minor version cannot run the pinned wheels (an
error); another patch version (a base image with Python 3.11.2 for a 3.11.7 kernel) is a
``python-version-differs`` warning, because docstrings and reprs printed by the notebook can
change between patch releases (seen on a real notebook printing ``help()`` and ``dir(math)``).
"""

from __future__ import annotations

import json
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..errors import BuildError
from .dockerfile import ENV_PREFIX
from .engine import base_labels

_LIST = (
    "import importlib.metadata as m, json, platform, sys\n"
    "dists = sorted({(d.metadata['Name'] or '', d.version) for d in m.distributions()})\n"
    "json.dump({'python': platform.python_version(), 'dists': dists}, sys.stdout)\n"
    "print()\n"  # a last newline: docker-py drops an unterminated last line of the log
)
MAX_OUTPUT = 4 * 1024 * 1024


def inspect_environment(client: Any, image: str) -> tuple[str, dict[str, str]]:
    """The Python version of ``image``'s environment and ``{canonical name: version}`` of its
    distributions."""
    out = client.containers.run(
        image,
        [f"{ENV_PREFIX}/bin/python", "-I", "-c", _LIST],
        remove=True,
        entrypoint=[],
        network_disabled=True,
        mem_limit="256m",
        pids_limit=64,
        labels=base_labels("verify"),
    )
    data = json.loads(out[:MAX_OUTPUT].decode("utf-8", "replace"))
    dists = {str(canonicalize_name(name)): str(version) for name, version in data["dists"] if name}
    return str(data["python"]), dists


def python_difference(kernel: str, image: str) -> str | None:
    """``None`` when ``image``'s Python is ``kernel``'s, else what differs (``minor``/``patch``)."""
    k, i = kernel.split("."), image.split(".")
    if k[:2] != i[:2]:
        return "minor"
    return None if k[:3] == i[:3] else "patch"


def _same(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def lock_mismatches(lock: list[str], installed: dict[str, str]) -> list[str]:
    """Human-readable differences between ``name==version`` lines and what is installed."""
    wanted = {str(canonicalize_name(n)): v for n, _, v in (line.partition("==") for line in lock)}
    problems = [
        f"{name}=={version} (image has {installed.get(name, 'nothing')})"
        for name, version in sorted(wanted.items())
        if name not in installed or not _same(installed[name], version)
    ]
    problems += [
        f"{name}=={version} (not in the lock)"
        for name, version in sorted(installed.items())
        if name not in wanted
    ]
    return problems


def verify_image(client: Any, image: str, lock: list[str], python: str | None = None) -> str | None:
    """Fail when the environment inside ``image`` is not exactly ``lock`` (or runs another
    minor version of Python than ``python``, the kernel's); return a warning when only the
    patch version differs.

    Raises
    ------
    BuildError
        ``reason="image-mismatch"``, naming each distribution that differs, or
        ``reason="python-mismatch"``.
    """
    version, installed = inspect_environment(client, image)
    differs = python_difference(python, version) if python else None
    if differs == "minor":
        raise BuildError(
            f"the image runs Python {version}, the kernel {python}",
            step="verify",
            reason="python-mismatch",
            hint=f"use a base image with Python {'.'.join(str(python).split('.')[:2])}",
        )
    problems = lock_mismatches(lock, installed)
    if problems:
        raise BuildError(
            f"the image's environment differs from the lock: {'; '.join(problems[:20])}",
            step="verify",
            reason="image-mismatch",
            hint="build again with --no-cache; if it persists, report it with the lock file",
        )
    if differs == "patch":
        return (
            f"python-version-differs: the image runs Python {version}, the kernel {python}; "
            "outputs that print docstrings, reprs or versions may differ (choose a base image "
            f"with Python {python} to rule that out)"
        )
    return None
