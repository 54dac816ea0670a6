"""A parameter sweep of six local runs through the CLI (real engine, real kernels)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.docker


def test_a_local_sweep_runs_every_row_and_writes_the_summary(
    shared_image: tuple[str, Path], tmp_path: Path
) -> None:
    image, _ = shared_image
    params = nbformat.v4.new_code_cell("alpha = 0\nseed = 0")
    params.metadata["tags"] = ["parameters"]
    work = nbformat.v4.new_code_cell(
        "from IPython.display import display\n"
        "display({'application/vnd.envpack.record+json': {'score': alpha * seed}}, raw=True)\n"
        "assert (alpha, seed) != (2, 3), 'this member fails on purpose'"
    )
    nb = nbformat.v4.new_notebook(cells=[params, work])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "p"}
    path = tmp_path / "sweepy.ipynb"
    nbformat.write(nb, path)
    sweep = ["--sweep", "alpha=1,2", "--sweep", "seed=1..3", "--max-parallel", "3", "-q"]
    env = {**os.environ, "ENVPACK_JOBS_DB": str(tmp_path / "jobs.sqlite")}
    done = subprocess.run(
        [sys.executable, "-m", "jupyter_envpack.cli", "run", str(path), "--image", image, *sweep],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert done.returncode == 1, done.stderr[-2000:]  # one member failed
    summary = Path(done.stdout.strip().splitlines()[-1])
    assert summary == tmp_path / "sweepy.sweep" / "summary.csv"
    with summary.open() as handle:
        table = list(csv.DictReader(handle))
    assert [(r["alpha"], r["seed"]) for r in table] == [
        (a, s) for a in ("1", "2") for s in ("1", "2", "3")
    ]
    states = {(r["alpha"], r["seed"]): r["state"] for r in table}
    assert states.pop(("2", "3")) == "failed"  # ... and did not stop the others
    assert set(states.values()) == {"succeeded"}
    assert [r["score"] for r in table] == ["1", "2", "3", "2", "4", "6"]  # read from the outputs
    for row in table:
        executed = nbformat.read(row["notebook"], as_version=4)
        assert f"alpha = {row['alpha']}" in "".join(c.source for c in executed.cells)
        assert float(row["duration_s"]) > 0

    # `jobs` lists the sweep once it is over: one row, its members expanded with --members
    listed = subprocess.run(
        [sys.executable, "-m", "jupyter_envpack.cli", "jobs", "--members", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    (record,) = json.loads(listed.stdout)
    assert (record["backend"], record["state"]) == ("local", "failed")
    assert record["message"] == "5 succeeded, 1 failed"
    members = [m["state"] for m in record["sweep"]["member_states"]]
    assert members == ["succeeded"] * 5 + ["failed"]
