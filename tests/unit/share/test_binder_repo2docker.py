"""The written binder/ folder as real repo2docker reads it (`--no-build --debug`: offline, no Docker).

repo2docker does not inline the pins into the Dockerfile: it copies ``binder/requirements.txt``
into the image and runs ``pip install -r`` on it. So the checks are: the Python buildpack was
picked (its ``pip install -r "binder/requirements.txt"`` step, no other buildpack's step), the
conda environment is the kernel's Python ``X.Y``, the requirements file reaches the image, and
every pin is in that very file; apt.txt packages do reach the Dockerfile text.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from jupyter_envpack.image.syslibs import SystemNeeds, record_system
from jupyter_envpack.share.binder import write_binder
from jupyter_envpack.snapshot.spec import EnvSpec, PinnedPackage

PINS = ["ipykernel==6.29.5", "numpy==1.26.4", "opencv-python==4.9.0.80", "six==1.16.0"]

ROOT = Path(__file__).resolve().parents[3]


def repo2docker_dockerfile(repo: Path) -> tuple[str, str]:
    res = subprocess.run(
        ["repo2docker", "--no-build", "--debug", "--", str(repo)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout, res.stderr


@pytest.mark.parametrize("python", ["3.11.7", "3.10.14"])
def test_repo2docker_picks_python_buildpack_version_and_pins(
    tmp_path: Path, make_notebook, python: str, monkeypatch
):
    # Given a repository with decoys Binder must ignore once binder/ exists
    repo = tmp_path / "repo"
    nb = make_notebook(["import numpy, cv2, six"], folder=repo, name="analysis.ipynb")
    (repo / "environment.yml").write_text("dependencies:\n  - python=3.8\n")
    (repo / "Dockerfile").write_text("FROM scratch\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    spec = EnvSpec("analysis.ipynb", python, [PinnedPackage(*p.split("==")) for p in PINS])
    monkeypatch.setenv("ENVPACK_WHEEL_CACHE", str(tmp_path / "cache"))
    record_system(spec.hash, SystemNeeds(packages=["libgl1"]))  # as its image build found

    # When envpack writes binder/ and repo2docker renders its Dockerfile
    write_binder(nb, spec=spec)
    dockerfile, log = repo2docker_dockerfile(repo)

    # Then the Python buildpack built on the kernel's X.Y installs exactly our requirements file
    minor = spec.python_minor
    assert f"Building conda environment for python={minor}" in log
    # repo2docker escapes the build-script file names ("." → "-2e", "-" → "-2d")
    unescaped = re.sub(r"-([0-9a-f]{2})", lambda m: chr(int(m[1], 16)), dockerfile)
    assert f"/environment.py-{minor}-linux-64.lock" in unescaped
    assert (
        "COPY --chown=0:0 src/binder/requirements.txt ${REPO_DIR}/binder/requirements.txt"
        in dockerfile
    )
    assert 'pip install --no-cache-dir -r "binder/requirements.txt"' in dockerfile
    assert "mamba env update" not in dockerfile and "FROM scratch" not in dockerfile
    assert "apt-get install --yes --no-install-recommends libgl1" in dockerfile
    installed = (repo / "binder/requirements.txt").read_text().splitlines()
    assert [line for line in installed if not line.startswith("#")] == PINS


def test_project_binder_folder_installs_jupyter_envpack_with_jupyterlab():
    # Given this repository's own binder/ (try jupyter-envpack on mybinder.org)
    dockerfile, log = repo2docker_dockerfile(ROOT)

    # Then repo2docker uses the Python buildpack, installs JupyterLab, then runs postBuild
    assert "Building conda environment for python=3.11" in log
    assert 'pip install --no-cache-dir -r "binder/requirements.txt"' in dockerfile
    assert "./binder/postBuild" in dockerfile
    requirements = (ROOT / "binder/requirements.txt").read_text()
    assert "jupyterlab>=4.2" in requirements and "ipywidgets" in requirements
    assert "pip install --no-cache-dir ." in (ROOT / "binder/postBuild").read_text()


def test_real_snapshot_closure_reaches_repo2docker(tmp_path: Path, make_notebook, kernel_python):
    # Given the real snapshot of a notebook in this interpreter
    from jupyter_envpack.snapshot import take_snapshot

    repo = tmp_path / "repo"
    nb = make_notebook(["import packaging.version"], folder=repo / "nbs", name="real.ipynb")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    spec = take_snapshot(nb, python=kernel_python)

    # When binder/ is written and repo2docker reads the repository
    write_binder(nb, spec=spec)
    dockerfile, log = repo2docker_dockerfile(repo)

    # Then the kernel's X.Y is used and the file installed holds the whole pinned closure
    assert f"Building conda environment for python={spec.python_minor}" in log
    assert 'pip install --no-cache-dir -r "binder/requirements.txt"' in dockerfile
    pins = [
        line
        for line in (repo / "binder/requirements.txt").read_text().splitlines()
        if not line.startswith("#")
    ]
    assert pins == spec.requirements_lines()
    assert any(p.startswith("packaging==") for p in pins)
    assert not (repo / "binder/apt.txt").exists()
