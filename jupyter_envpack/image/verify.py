"""Check the promise inside the artefact: the distributions in a built image's environment.

After each build a short, labelled, network-less container runs the environment's own Python and
lists its distributions with :mod:`importlib.metadata`; they must be exactly the lock.
"""

from __future__ import annotations

import json
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..errors import BuildError
from .dockerfile import ENV_PREFIX

_LIST = (
    "import importlib.metadata as m, json, sys\n"
    "json.dump(sorted({(d.metadata['Name'] or '', d.version) for d in m.distributions()}), "
    "sys.stdout)\n"
    "print()\n"  # a last newline: docker-py drops an unterminated last line of the log
)
MAX_OUTPUT = 4 * 1024 * 1024


def installed_distributions(client: Any, image: str) -> dict[str, str]:
    """``{canonical name: version}`` of the distributions in ``image``'s environment."""
    out = client.containers.run(
        image,
        [f"{ENV_PREFIX}/bin/python", "-I", "-c", _LIST],
        remove=True,
        entrypoint=[],
        network_disabled=True,
        mem_limit="256m",
        pids_limit=64,
        labels={"org.jupyter.envpack": "1", "org.jupyter.envpack.kind": "verify"},
    )
    pairs = json.loads(out[:MAX_OUTPUT].decode("utf-8", "replace"))
    return {str(canonicalize_name(name)): str(version) for name, version in pairs if name}


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


def verify_image(client: Any, image: str, lock: list[str]) -> None:
    """Fail when the environment inside ``image`` is not exactly ``lock``.

    Raises
    ------
    BuildError
        ``reason="image-mismatch"``, naming each distribution that differs.
    """
    problems = lock_mismatches(lock, installed_distributions(client, image))
    if problems:
        raise BuildError(
            f"the image's environment differs from the lock: {'; '.join(problems[:20])}",
            step="verify",
            reason="image-mismatch",
            hint="build again with --no-cache; if it persists, report it with the lock file",
        )
