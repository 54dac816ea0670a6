"""What a repository declares beside a notebook, read as hostile input; the reconstruction's
defaults (date from the last commit, Python from the notebook) — all without a network."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from jupyter_envpack.snapshot import reconstruct as reconstruct_module
from jupyter_envpack.snapshot.declared import MAX_DECLARED_BYTES, declared_requirements
from jupyter_envpack.snapshot.notebook import analyse_notebook
from jupyter_envpack.snapshot.reconstruct import (
    candidates_for,
    default_as_of,
    default_python,
    third_party_imports,
)

PYPROJECT = """
[project]
name = "paper"
dependencies = ["numpy>=1.20", "pandas==1.3.5 ; python_version >= '3.7'", "not a req!"]
[tool.poetry.dependencies]
python = "^3.8"
scipy = "^1.7"
"""
ENVIRONMENT = """
name: paper
channels: [conda-forge]
dependencies:
  - python=3.8
  - conda-forge::matplotlib-base=3.4
  - pytorch
  - r-base
  - pip
  - pip:
      - seaborn==0.11.2
      - -e .
"""
SETUP_CFG = """
[metadata]
name = paper %(evil)s
[options]
install_requires =
    requests>=2
    tqdm
"""
PIPFILE = """
[packages]
xarray = "==0.19.0"
dask = "*"
h5py = {version = ">=3"}
"""


def _declared(folder: Path) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for req, source in declared_requirements(folder):
        out.setdefault(source, set()).add(req)
    return out


def test_every_declaration_format_is_read(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "environment.yml").write_text(ENVIRONMENT)
    (tmp_path / "setup.cfg").write_text(SETUP_CFG)
    (tmp_path / "Pipfile").write_text(PIPFILE)
    (tmp_path / "requirements-dev.txt").write_text(
        "pytest==7.0  # tests\n-r other.txt\nevil @ git+https://example.org/x.git\n"
        "pkg @ https://example.org/pkg-1-py3-none-any.whl\n--index-url https://example.org/\n"
    )
    assert _declared(tmp_path) == {
        "pyproject.toml": {"numpy>=1.20", "pandas==1.3.5 ; python_version >= '3.7'", "scipy"},
        # conda names by name (matplotlib-base → matplotlib, '=' is a prefix), python/pip/r-* not
        "environment.yml": {"matplotlib==3.4.*", "torch", "seaborn==0.11.2"},
        "setup.cfg": {"requests>=2", "tqdm"},
        "Pipfile": {"xarray==0.19.0", "dask", "h5py>=3"},
        "requirements-dev.txt": {"pytest==7.0"},
    }


@pytest.mark.reliability("L5")
def test_symlinks_huge_and_malformed_files_declare_nothing(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "pyproject.toml").write_text(PYPROJECT)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "pyproject.toml").symlink_to(outside / "pyproject.toml")  # out of the folder
    (repo / "requirements.txt").symlink_to("/etc/passwd")
    (repo / "Pipfile").write_text("x" * (MAX_DECLARED_BYTES + 1))  # too large: not read at all
    (repo / "environment.yml").write_text("dependencies: [*undefined_alias\n")  # malformed
    (repo / "setup.cfg").write_text("[options\ninstall_requires = numpy\n")  # malformed
    os.mkfifo(repo / "requirements-fifo.txt")  # would block a naive open()
    assert declared_requirements(repo) == []


@pytest.mark.reliability("L5")
def test_a_yaml_bomb_and_odd_types_are_bounded(tmp_path: Path) -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(20)
    )
    (tmp_path / "environment.yml").write_text(bomb + "dependencies: *u\n")
    (tmp_path / "pyproject.toml").write_text('[project]\ndependencies = "numpy"\n')
    (tmp_path / "Pipfile").write_text("packages = 3\n")
    assert declared_requirements(tmp_path) == []


def _git(repo: Path, *args: str, date: str = "2019-03-04T05:06:07+00:00") -> None:
    env = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    env |= {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1"}
    cmd = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args]
    subprocess.run(cmd, cwd=repo, env=env, check=True, capture_output=True)


@pytest.mark.reliability("L2")
def test_the_date_is_the_notebooks_last_commit_read_without_git(
    tmp_path: Path, spawned: list[list[str]], hostile_repo: Callable[[Path], Path]
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    nb = repo / "nb.ipynb"
    nb.write_text("{}")
    _git(repo, "add", "nb.ipynb")
    _git(repo, "commit", "-qm", "nb", date="2019-03-04T05:06:07+00:00")
    (repo / "other.txt").write_text("later")
    _git(repo, "add", "other.txt")
    _git(repo, "commit", "-qm", "later", date="2021-01-01T00:00:00+00:00")
    marks = hostile_repo(repo)  # every command-running setting, and a commit of .gitattributes
    spawned.clear()
    assert default_as_of(nb) == ("2019-03-04", "git-commit")
    assert spawned == [] and list(marks.iterdir()) == []
    loose = tmp_path / "loose.ipynb"
    loose.write_text("{}")
    os.utime(loose, (1_600_000_000, 1_600_000_000))
    assert default_as_of(loose) == ("2020-09-13", "mtime")


@pytest.mark.reliability("L5")
def test_a_url_or_vcs_requirement_is_never_a_candidate() -> None:
    found = candidates_for(["x"], [("x @ git+https://example.org/x.git", "requirements.txt")], [])
    assert [(c.requirement, c.source) for c in found] == [("x", "import-name")]


def test_local_modules_are_not_candidates_but_what_they_import_is(
    make_notebook: Callable[..., Path],
) -> None:
    nb = make_notebook(["import helpers\nimport numpy as np\nimport os"])
    (nb.parent / "helpers.py").write_text("import scipy.stats\nimport json\n")
    analysis, _ = analyse_notebook(nb)
    assert third_party_imports(nb, analysis) == ["numpy", "scipy"]


def test_python_is_the_notebooks_only_where_a_base_image_exists(monkeypatch) -> None:
    def nb(version: str) -> dict[str, object]:
        return {"metadata": {"language_info": {"version": version}}}

    asked: list[str] = []
    bases = {"my/base:1": None, "my/py39:1": "3.9"}  # None: no engine, or it lacks the image
    monkeypatch.setattr(reconstruct_module, "_base_python", lambda i: asked.append(i) or bases[i])
    assert default_python(nb("3.10.4"), None, "3.11") == ("3.10", "notebook")
    assert default_python(nb("3.5.1"), None, "3.11") == ("3.11", "kernel")  # no 3.5 base
    assert default_python(nb("3.10.4"), "my/base:1", "3.11") == ("3.11", "kernel")
    assert default_python(nb("3.10.4"), "my/py39:1", "3.11") == ("3.9", "base-image")
    assert default_python({}, None, "3.12") == ("3.12", "kernel")
    assert asked == ["my/base:1", "my/py39:1"]
