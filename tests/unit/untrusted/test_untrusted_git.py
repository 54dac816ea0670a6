"""A repository whose ``.git/config`` runs commands (RELIABILITY L2): reading it for the Binder
link, the dirty check and the push check must run none of them, through the CLI and the magic
(the REST route is in tests/unit/server/test_server_binder.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from IPython.testing import globalipapp

from jupyter_envpack.cli import main
from jupyter_envpack.share.gitrepo import inspect_repo


@pytest.fixture
def attacked(tmp_path: Path, make_notebook, hostile_repo) -> tuple[Path, Path]:
    repo = tmp_path / "repo"
    nb = make_notebook(["import json"], name="analysis.ipynb", folder=repo)
    return nb, hostile_repo(repo)


@pytest.mark.reliability("L2")
def test_the_planted_config_does_run_under_git(attacked: tuple[Path, Path]) -> None:
    """Guard of the guard: the same repository makes plain `git status` run the commands."""
    nb, marks = attacked
    subprocess.run(["git", "-C", str(nb.parent), "status"], capture_output=True, check=False)
    assert sorted(p.name for p in marks.iterdir())  # fsmonitor and the clean filter ran


@pytest.mark.reliability("L2")
def test_cli_binder_runs_nothing_from_the_repository(
    attacked: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    nb, marks = attacked
    assert main(["binder", str(nb), "--json", "--python", sys.executable]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {w["code"] for w in info["warnings"]} >= {"notebook-uncommitted", "commit-not-pushed"}
    assert info["link"].startswith("https://mybinder.org/v2/gh/envpack-test/demo/")
    assert list(marks.iterdir()) == []


@pytest.mark.reliability("L2")
def test_magic_binder_runs_nothing_from_the_repository(
    attacked: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    nb, marks = attacked
    shell = globalipapp.get_ipython()
    shell.run_line_magic("load_ext", "jupyter_envpack")
    monkeypatch.setenv("ENVPACK_MAGICS_DISPLAY", "text")
    view = shell.run_line_magic("envpack", f"binder --notebook {nb}")
    assert "notebook-uncommitted" in {w["code"] for w in view.data["warnings"]}
    assert list(marks.iterdir()) == []


@pytest.mark.reliability("L2")
def test_repository_state_matches_git_without_running_it(tmp_path: Path, make_notebook) -> None:
    """The dulwich reading agrees with git on a plain repository: staged, changed, untracked,
    ignored, pushed."""
    repo = tmp_path / "r"
    make_notebook(["1"], name="a.ipynb", folder=repo)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), "-c", "user.email=t@e.org", "-c", "user.name=T", *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    git("init", "-q", "-b", "main")
    (repo / ".gitignore").write_text("*.log\n")
    (repo / "binder").mkdir()
    (repo / "binder" / "requirements.txt").write_text("six==1\n")
    git("add", ".")
    git("commit", "-qm", "one")
    git("remote", "add", "origin", "https://github.com/o/r")
    git("update-ref", "refs/remotes/origin/main", "HEAD")
    assert inspect_repo(repo, ["a.ipynb", "binder/"]).pushed  # type: ignore[union-attr]
    (repo / "a.ipynb").write_text("{}")
    (repo / "binder" / "runtime.txt").write_text("python-3.11\n")
    (repo / "binder" / "requirements.txt").write_text("six==2\n")
    git("add", "binder/requirements.txt")
    (repo / "x.log").write_text("")
    git("commit", "--allow-empty", "-qm", "two")
    state = inspect_repo(repo / "a.ipynb", ["a.ipynb", "binder/", "x.log"])
    assert state is not None
    assert state.changes == {"a.ipynb": " M", "binder/runtime.txt": "??", "x.log": "!!"}
    assert (state.branch, state.commit, state.pushed) == ("main", git("rev-parse", "HEAD"), False)
    assert (state.remote_name, state.remote_url) == ("origin", "https://github.com/o/r")
