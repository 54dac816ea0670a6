"""Reconstructing an environment that is gone (issue 13.2 skeleton): real index, real uv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from shared_corpus import corpus_notebook

from jupyter_envpack.execute import RunOptions
from jupyter_envpack.image import BuildOptions
from jupyter_envpack.image.dockerfile import ENV_PREFIX
from jupyter_envpack.pipeline import prepare, rerun
from jupyter_envpack.snapshot import ReconstructOptions, SnapshotOptions
from jupyter_envpack.snapshot.reconstruct import candidates_for, default_python

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


@pytest.mark.docker
def test_with_a_base_image_the_reconstruction_targets_the_python_it_runs(test_base_image) -> None:
    # Given a configured base (the offline Debian one runs 3.11) and a kernel said to be 3.9,
    # When the reconstruction picks its Python, Then it asks the image, not the kernel
    nb = {"metadata": {"language_info": {"version": "3.12.1"}}}
    assert default_python(nb, test_base_image, "3.9") == ("3.11", "base-image")
    assert default_python(nb, "envpack-test/not-here:1", "3.9") == ("3.9", "kernel")


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
        [*argv, "--as-of", "2020-01-01", "--python-version", "3.11", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    snap: dict[str, Any] = json.loads(proc.stdout)
    assert snap["schema"] == "envpack.snapshot/1" and snap["origin"] == "reconstructed"
    assert snap["warnings"][0]["code"] == "reconstructed"
    assert "not what ran" in snap["warnings"][0]["message"]
    data = snap["reconstruction"]
    assert data["python"] == "3.11" and data["python_source"] == "option"
    # six==1.16.0 (declared) came out on 2021-05-05 (and PyYAML's first cp311 wheels in 2023):
    # the cut-off had to move forward, says so, and was bisected back to within a week
    assert data["as_of"] == "2020-01-01" and data["as_of_source"] == "option"
    assert data["date_moved"] is True and data["as_of_used"] > "2021-05-05"
    assert data["pins"]["six"] == "1.16.0" and "pyyaml" in data["pins"]
    assert "python-dateutil" in data["pins"] and data["unresolved"] == []
    verdict = {(c["module"], c["requirement"]): c for c in data["candidates"]}
    assert verdict[("yaml", "PyYAML")]["verified"] is True
    assert "yaml/" in verdict[("yaml", "PyYAML")]["evidence"]
    assert verdict[("yaml", "six==1.16.0")]["verified"] is False  # declared, but no yaml in it
    assert verdict[("yaml", "yaml")]["verified"] is False  # no such distribution
    assert "attrs" not in data["pins"]  # the %pip line was not what provides an import
    yaml_import = next(i for i in data["imports"] if i["import"] == "yaml")
    assert yaml_import["chosen"] == "PyYAML" and "yaml/" in yaml_import["evidence"]
    assert {"name": "yaml", "why": verdict[("yaml", "yaml")]["evidence"]} in yaml_import["rejected"]
    pinned = {p["name"]: p for p in snap["packages"]}
    assert pinned["pyyaml"]["modules"] == ["yaml"] and pinned["ipykernel"]["reason"] == "runner"
    assert {p["name"]: p["version"] for p in snap["packages"]} == data["pins"]


@pytest.mark.docker
def test_a_corpus_notebook_reconstructed_builds_reruns_and_meets_its_stored_outputs(
    tmp_path: Path, docker_client: Any, test_base_image: str
) -> None:
    """13-Modules-and-Packages (2017, Python 3.5, imports numpy): reconstructed as of its
    commit date, built, rerun; the image holds exactly the pins; the report compares with the
    outputs stored in 2017."""
    path = tmp_path / "13-Modules-and-Packages.ipynb"
    shutil.copyfile(corpus_notebook(path.name), path)
    ropts = ReconstructOptions("2017-08-15", "3.11", test_base_image)  # the base image's Python
    build = BuildOptions(base_image=test_base_image)
    prepared = prepare(path, build, snapshot=SnapshotOptions(reconstruct=ropts), use_lock=False)
    spec = prepared.spec
    rec = spec.reconstruction or {}
    assert spec.origin == "reconstructed" and rec["as_of_used"] > "2017-08-15"  # no cp311 yet
    run = RunOptions(labels={"org.jupyter.envpack.test": "reconstruct"})
    result, built = rerun(path, prepared, "docker", run, client=docker_client)
    assert built is not None
    image = docker_client.images.get(built.image)
    assert image.labels["org.jupyter.envpack.origin"] == "reconstructed"
    assert image.labels["org.jupyter.envpack.as-of"] == rec["as_of_used"]
    inside = docker_client.containers.run(
        built.image,
        [f"{ENV_PREFIX}/bin/python", "-c", VERSIONS],
        remove=True,
        network_disabled=True,
        labels={"org.jupyter.envpack": "1", "org.jupyter.envpack.test": "reconstruct"},
    )
    installed = json.loads(inside)
    assert {name: installed.get(name) for name in rec["pins"]} == rec["pins"]
    assert int(rec["pins"]["numpy"].split(".")[0]) < 2
    report = result.report
    assert report.origin == "reconstructed" and report.as_of == rec["as_of_used"]
    assert report.to_json()["origin"] == "reconstructed"
    status = {c.index: c.status for c in report.cells}
    # compared with the 2017 outputs: numpy's np.cos(np.pi) still prints -1.0 (numpy < 2), and
    # `from numpy import *` still shadows sum(); help(sum) changed between Python 3.5 and 3.11
    assert status[8] == "same" and status[19] == "same" and status[6] == "same"
    assert report.compared >= 7


VERSIONS = (
    "import importlib.metadata as m, json, re; "
    "print(json.dumps({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(): d.version "
    "for d in m.distributions()}))"
)
