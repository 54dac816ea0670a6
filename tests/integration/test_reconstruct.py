"""Reconstructing an environment that is gone (issue 13.2 skeleton): real index, real uv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat

from jupyter_envpack.snapshot.reconstruct import candidates_for

REPO = Path(__file__).resolve().parents[2]


def old_notebook(folder: Path) -> Path:
    """Imports yaml and dateutil, ``%pip install attrs``, and a requirements.txt pinning six."""
    (folder / "requirements.txt").write_text("six==1.16.0  # the repository's own pin\n-e .\n")
    nb = nbformat.v4.new_notebook()
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.4"}
    nb.cells = [
        nbformat.v4.new_code_cell("import yaml\nimport dateutil\nimport json\n%pip install attrs")
    ]
    path = folder / "old.ipynb"
    nbformat.write(nb, path)
    return path


def test_candidates_keep_the_order_of_evidence() -> None:
    found = candidates_for(["yaml"], [("PyYAML==5.1", "requirements.txt")], ["attrs"])
    assert [(c.requirement, c.source) for c in found] == [
        ("PyYAML==5.1", "requirements.txt"),
        ("attrs", "%pip"),
        ("yaml", "import-name"),
    ]


def test_reconstruct_verifies_on_wheels_and_moves_the_date_forward(tmp_path: Path) -> None:
    path = old_notebook(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "DOCKER_HOST": "unix:///nonexistent.sock"}
    argv = [sys.executable, "-m", "jupyter_envpack.cli", "snapshot", str(path), "--reconstruct"]
    proc = subprocess.run(
        [*argv, "--as-of", "2020-01-01", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data: dict[str, Any] = json.loads(proc.stdout)
    assert data["origin"] == "reconstructed" and data["python"] == "3.11"
    # six==1.16.0 (declared) came out in 2021: the cut-off had to move forward, and says so
    assert data["as_of"] == "2020-01-01" and data["as_of_used"] > "2021-05-01"
    assert data["pins"]["six"] == "1.16.0" and "pyyaml" in data["pins"]
    assert "python-dateutil" in data["pins"] and data["unresolved"] == []
    verdict = {(c["module"], c["requirement"]): c for c in data["candidates"]}
    assert verdict[("yaml", "PyYAML")]["verified"] is True
    assert "yaml/" in verdict[("yaml", "PyYAML")]["evidence"]
    assert verdict[("yaml", "six==1.16.0")]["verified"] is False  # declared, but no yaml in it
    assert verdict[("yaml", "yaml")]["verified"] is False  # no such distribution
    assert "attrs" not in data["pins"]  # the %pip line was not what provides an import
