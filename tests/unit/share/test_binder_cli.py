"""`jupyter envpack binder` through the real CLI entry point (the core's main + our plug-in)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from jupyter_envpack.cli import main


@pytest.fixture
def repo_notebook(tmp_path, make_notebook):
    repo = tmp_path / "repo"
    nb = make_notebook(["import packaging"], name="demo.ipynb", folder=repo / "nbs")
    for cmd in (
        ["init", "-q", "-b", "main"],
        ["add", "."],
        ["-c", "user.email=t@e.org", "-c", "user.name=T", "commit", "-qm", "nb"],
        ["remote", "add", "origin", "https://gitlab.com/grp/sub/demo.git"],
    ):
        subprocess.run(["git", "-C", str(repo), *cmd], check=True)
    return repo, nb


def test_json_gives_link_badges_and_warnings(repo_notebook, capsys):
    repo, nb = repo_notebook
    assert main(["binder", str(nb), "--json", "--python", sys.executable]) == 0
    info = json.loads(capsys.readouterr().out)
    sha = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert info["link"] == (
        f"https://mybinder.org/v2/gl/grp%2Fsub%2Fdemo/{sha}?urlpath=lab/tree/nbs/demo.ipynb"
    )
    assert set(info["badges"]) == {"markdown", "rst"}
    assert [w["code"] for w in info["warnings"]][:2] == ["commit-not-pushed", "binder-missing"]
    assert any(
        line.startswith("packaging==") for line in info["files"]["requirements.txt"].splitlines()
    )
    assert info["written"] == []


def test_write_then_text_output(repo_notebook, capsys):
    repo, nb = repo_notebook
    assert (
        main(["binder", str(nb), "--write", "--branch", "--host", "https://binder.example.org"])
        == 0
    )
    out, err = capsys.readouterr()
    assert "wrote binder/requirements.txt" in out and "wrote binder/runtime.txt" in out
    assert "https://binder.example.org/v2/gl/grp%2Fsub%2Fdemo/main?urlpath=" in out
    assert "warning: binder/ has uncommitted changes" in err and "fix: git add binder" in err
    assert (
        repo / "binder/runtime.txt"
    ).read_text() == f"python-{sys.version_info[0]}.{sys.version_info[1]}\n"


def test_bad_host_is_a_short_error_exit_2(repo_notebook, capsys):
    _, nb = repo_notebook
    assert main(["binder", str(nb), "--host", "javascript:alert(1)"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the Binder host must be an https URL") and "hint:" in err
