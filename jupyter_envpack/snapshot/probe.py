"""Ask the KERNEL's interpreter what is installed (never silently the server's own environment).

One subprocess runs ``_probe_script.py`` with the chosen interpreter and prints a JSON report.
Results are cached on disk, keyed by the interpreter and validated by the mtimes of its
``sys.path`` folders, so an unchanged environment is not probed twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError, ProbeError

PROBE_TIMEOUT = 30.0
_SCRIPT = Path(__file__).with_name("_probe_script.py")


@dataclass
class Distribution:
    """One installed distribution as the probe saw it."""

    name: str
    version: str
    requires: list[str] = field(default_factory=list)
    top_level: list[str] = field(default_factory=list)
    installer: str | None = None
    direct_url: dict[str, Any] | None = None


@dataclass
class Environment:
    """What the kernel's interpreter reported."""

    python_version: str
    executable: str
    markers: dict[str, str]
    stdlib: frozenset[str]
    distributions: list[Distribution]
    conda: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_probe(cls, data: dict[str, Any]) -> Environment:
        """Build from the probe script's JSON (raises :class:`ProbeError` on junk)."""
        if "error" in data:
            raise ProbeError(f"the kernel's interpreter cannot be probed: {data['error']}")
        try:
            py = data["python"]
            dists = [
                Distribution(
                    d["name"],
                    d["version"],
                    list(d.get("requires") or []),
                    list(d.get("top_level") or []),
                    d.get("installer"),
                    d.get("direct_url"),
                )
                for d in data["distributions"]
            ]
            return cls(
                python_version=py["version"],
                executable=py["executable"],
                markers=dict(data["markers"]),
                stdlib=frozenset(data["stdlib"]) | frozenset(data.get("builtin", [])),
                distributions=dists,
                conda=bool(py.get("conda")),
                raw=data,
            )
        except (KeyError, TypeError) as exc:
            raise ProbeError(f"the probe returned an unexpected report ({exc})") from None


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "jupyter-envpack" / "probe"


def _fingerprint(paths: list[str]) -> str:
    h = hashlib.sha256()
    for p in paths:
        try:
            st = Path(p).stat()
        except OSError:
            h.update(f"{p}:missing".encode())
            continue
        h.update(f"{p}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def _kernelspec_file(kernel: str) -> tuple[str | None, list[str]] | None:
    """``(language, argv)`` of the first ``<jupyter path>/kernels/<kernel>/kernel.json``, read
    without jupyter_client (whose kernelspec module imports ipykernel and IPython, ~0.3-0.9 s)."""
    from jupyter_core.paths import jupyter_path

    for folder in jupyter_path("kernels"):
        path = Path(folder) / kernel.lower() / "kernel.json"
        try:
            with path.open("rb") as f:
                data = json.loads(f.read(1 << 20))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("argv", []), list):
            return data.get("language"), [str(a) for a in data.get("argv", [])]
    return None


def _kernelspec_client(kernel: str) -> tuple[str | None, list[str]]:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(kernel)
    except NoSuchKernel:
        raise InputError(
            f"no Jupyter kernel named {kernel!r} is installed",
            hint="list kernels with `jupyter kernelspec list`",
        ) from None
    return spec.language, list(spec.argv)


def resolve_kernel_python(kernel: str) -> str:
    """The interpreter of a kernelspec (``argv[0]``; ``python`` means the current one)."""
    found = _kernelspec_file(kernel)
    if found is None and kernel.lower() == "python3":
        found = ("python", ["python"])  # ipykernel's built-in spec: this interpreter
    language, argv = found or _kernelspec_client(kernel)
    if (language or "python").lower() != "python":
        raise InputError(f"kernel {kernel!r} runs {language}, not Python")
    exe = argv[0] if argv else "python"
    if exe in {"python", "python3", "{python}"} or exe.startswith("python3."):
        return sys.executable
    return exe


_memory: dict[str, tuple[str, Environment]] = {}
"""In-process memo of probe results: (fingerprint, environment) per interpreter."""


def probe_interpreter(
    python: str, timeout: float = PROBE_TIMEOUT, use_cache: bool = True
) -> Environment:
    """Run the probe with ``python`` and return what it reports."""
    exe = shutil.which(python) or python
    if not Path(exe).exists():
        raise ProbeError(
            f"interpreter not found: {python}", hint="give --python the path of the kernel's python"
        )
    memo = _memory.get(exe)
    if use_cache and memo is not None and memo[0] == _fingerprint([*memo[1].raw["path"], exe]):
        return memo[1]
    cache_file = _cache_dir() / (hashlib.sha256(exe.encode()).hexdigest()[:24] + ".json")
    if use_cache and cache_file.exists():
        try:
            cached = json.loads(cache_file.read_text())
            if cached.get("fingerprint") == _fingerprint(cached["report"]["path"] + [exe]):
                found = Environment.from_probe(cached["report"])
                _memory[exe] = (cached["fingerprint"], found)
                return found
        except (OSError, ValueError, KeyError, TypeError):
            pass
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    try:
        proc = subprocess.run(
            [exe, str(_SCRIPT)],
            capture_output=True,
            timeout=timeout,
            env=env,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise ProbeError(
            f"the kernel's interpreter {exe} did not answer within {timeout:.0f} s",
            hint="is that environment on a slow or hung file system?",
        ) from None
    except OSError as exc:
        raise ProbeError(f"cannot start the kernel's interpreter {exe}: {exc.strerror}") from None
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise ProbeError(f"the probe failed in {exe} (exit {proc.returncode}): {' | '.join(tail)}")
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        raise ProbeError(f"the probe in {exe} printed something that is not JSON") from None
    result = Environment.from_probe(data)
    if use_cache:
        _memory[exe] = (_fingerprint([*data["path"], exe]), result)
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(".tmp")
            tmp.write_text(
                json.dumps({"fingerprint": _fingerprint(data["path"] + [exe]), "report": data})
            )
            tmp.replace(cache_file)
        except OSError:
            pass
    return result


def probe_current() -> Environment:
    """Probe the running interpreter in-process (what the magics use: the kernel IS the env)."""
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        runpy.run_path(str(_SCRIPT), run_name="__main__")
    return Environment.from_probe(json.loads(buf.getvalue()))
