"""Helpers shared by the benchmarks: timing, notebooks, the offline base image."""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat

REPO = Path(__file__).resolve().parents[1]


def user_venv() -> Path:
    """The ``bin`` of a venv with this checkout (editable) and pipreqs, first on ``PATH``.

    Whole-process rows time what a user runs: ``jupyter envpack`` in a virtualenv. Not this
    machine's interpreter: a version manager's shims (pyenv's are bash scripts, ~50 ms) and a
    ``.pth`` hook of this sandbox (it imports certifi at every start, ~20 ms) would be timed in
    every ``jupyter``, ``jupyter-envpack`` and ``pipreqs`` process. Made once per checkout.
    """
    key = hashlib.sha256(str(REPO).encode()).hexdigest()[:12]
    venv = Path("/var/tmp/envpack-bench") / f"user-venv-{key}"
    if not (venv / "bin" / "pipreqs").exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
        subprocess.run([*pip, "-e", str(REPO), "pipreqs"], check=True)
    os.environ["PATH"] = f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    return venv / "bin"


BASE_IMAGE = os.environ.get("ENVPACK_TEST_BASE_IMAGE", "envpack-test/debian-python:bookworm")


def timed(fn: Callable[[], object], repeat: int = 3) -> float:
    """Median wall time of ``fn`` over ``repeat`` runs, in seconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def write_notebook(path: Path, sources: list[str], execute: bool = False) -> Path:
    """A Python notebook with these code cells (executed here when asked)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "language": "python",
        "display_name": "Python 3",
    }
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    if execute:
        from nbclient import NotebookClient

        NotebookClient(nb, kernel_name="python3").execute()
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def ratio_line(name: str, baseline: float, ours: float, target: str) -> str:
    """One result line: both times, the ratio, the target."""
    return (
        f"{name}: baseline {baseline:.3f} s, envpack {ours:.3f} s, "
        f"ratio {baseline / ours:.1f}x (target {target})"
    )


def process_median(cmd: list[str], repeat: int = 5, **kw: Any) -> tuple[float, int, str]:
    """Median wall time of the whole process ``cmd`` over ``repeat`` runs.

    Returns the median in seconds, the last exit status and the last stderr (for the report when a
    baseline finds nothing).
    """
    times, proc = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)
        times.append(time.perf_counter() - start)
    assert proc is not None
    return statistics.median(times), proc.returncode, proc.stderr


def row(
    name: str,
    baseline: float | None,
    ours: float,
    target: str,
    met: bool | None,
    unit: str = "s",
    note: str = "",
) -> None:
    """Print one table row as a ``ROW`` JSON line (``run_all.sh`` collects them)."""
    ratio = baseline / ours if baseline and ours else None
    data = {
        "name": name,
        "baseline": baseline,
        "envpack": ours,
        "unit": unit,
        "ratio": ratio,
        "target": target,
        "met": met,
        "note": note,
    }
    print("ROW " + json.dumps(data), flush=True)
