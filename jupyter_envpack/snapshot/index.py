"""Pin what the kernel's environment lacks from the user's package index (pip resolves, on the host).

Used for ipykernel when the kernel's environment has none (the image must start a kernel) and for
exact ``%pip install x==v`` pins the kernel never ran. ``pip install --dry-run --report`` resolves
for the kernel's Python with the user's own pip configuration; the packages already pinned are
passed as constraints so the closure fits them. Index settings travel in the environment, never on
the command line (RELIABILITY L7). Results are cached on disk by their inputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from ..errors import ProbeError

RESOLVE_TIMEOUT = 300.0


@dataclass(frozen=True)
class IndexOptions:
    """Package index settings (default: whatever the user's pip is configured with)."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    ca_bundle: str | None = None

    def environment(self) -> dict[str, str]:
        """``PIP_*`` variables carrying these settings (never argv: other users can read it)."""
        env: dict[str, str] = {}
        if self.index_url:
            env["PIP_INDEX_URL"] = self.index_url
        if self.extra_index_urls:
            env["PIP_EXTRA_INDEX_URL"] = " ".join(self.extra_index_urls)
        if self.ca_bundle:
            env["PIP_CERT"] = str(Path(self.ca_bundle).resolve())
        return env


def _cache_file(key: str) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "jupyter-envpack" / "resolve" / f"{key}.json"


def _pip_argv(python_minor: str, report: str, constraints: str, reqs: list[str]) -> list[str]:
    abi = "cp" + python_minor.replace(".", "")
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--ignore-installed",
        "--quiet",
        "--disable-pip-version-check",
        "--only-binary=:all:",
        "--python-version",
        python_minor,
        "--implementation",
        "cp",
        "--abi",
        abi,
        "--abi",
        "abi3",
        "--abi",
        "none",
        "--target",  # pip < 24 wants it with --python-version; --dry-run writes nothing there
        str(Path(report).with_name("target")),
        "--report",
        report,
        "-c",
        constraints,
        *reqs,
    ]


def resolve_from_index(
    requirements: list[str],
    python_minor: str,
    constraints: list[str],
    index: IndexOptions | None = None,
) -> dict[str, str]:
    """Resolve ``requirements`` for Python ``python_minor``; return ``{name: version}``.

    Raises :class:`ProbeError` (with pip's last error lines) when pip cannot resolve them.
    """
    index = index or IndexOptions()
    ident = json.dumps([requirements, python_minor, sorted(constraints), index.environment()])
    cache = _cache_file(hashlib.sha256(ident.encode()).hexdigest()[:32])
    try:
        return dict(json.loads(cache.read_text()))
    except (OSError, ValueError, TypeError):
        pass
    with tempfile.TemporaryDirectory(prefix="envpack-resolve-") as tmp:
        report, cons = str(Path(tmp, "report.json")), str(Path(tmp, "constraints.txt"))
        Path(cons).write_text("\n".join(constraints) + "\n")
        env = {**os.environ, **index.environment(), "PIP_NO_INPUT": "1"}
        argv = _pip_argv(python_minor, report, cons, requirements)
        try:
            proc = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                env=env,
                timeout=RESOLVE_TIMEOUT,
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ProbeError(f"pip could not resolve {', '.join(requirements)}: {exc}") from None
        if proc.returncode != 0:
            tail = [ln for ln in proc.stderr.splitlines() if ln.strip()][-3:]
            raise ProbeError(
                f"pip could not resolve {', '.join(requirements)} for Python {python_minor}: "
                + (" | ".join(tail) or f"exit {proc.returncode}"),
                hint="check the package index settings (pip config, --index-url, --ca-bundle)",
            )
        data = json.loads(Path(report).read_text())
    found = {
        str(canonicalize_name(item["metadata"]["name"])): str(item["metadata"]["version"])
        for item in data.get("install", [])
    }
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(found))
    except OSError:
        pass
    return found
