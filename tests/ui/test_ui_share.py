"""End to end: the sidebar's Share section for a notebook inside a git repository.

The lab's root (see conftest.py: ``lab`` is started once for this module) is made a git
repository with a GitHub https remote whose branch is marked as pushed, so the real server answers
a real Binder link; the test checks the link and badges the browser shows, then writes the
``binder/`` folder from the sidebar.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_ui_sidebar import SIDEBAR, assert_no_envpack_errors, open_notebook, shoot, show_sidebar

pytestmark = [pytest.mark.ui, pytest.mark.docker, pytest.mark.slow]
REMOTE = "https://github.com/envpack-test/demo"
SHARE = f"{SIDEBAR} .jp-Envpack-section-Share"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@example.org", "-c", "user.name=Tester", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture(scope="module")
def repo_lab(lab: Any) -> Any:
    """The lab, its root now a git repository whose HEAD is on the remote's main branch."""
    root = lab.root
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "demo.ipynb", "helpers.py")
    git(root, "commit", "-qm", "demo")
    git(root, "remote", "add", "origin", REMOTE)
    git(root, "update-ref", "refs/remotes/origin/main", "HEAD")  # as if pushed (no network)
    return lab


def test_share_shows_the_binder_link_and_writes_the_binder_folder(page: Any, repo_lab: Any) -> None:
    sha = git(repo_lab.root, "rev-parse", "HEAD")
    expected = f"https://mybinder.org/v2/gh/envpack-test/demo/{sha}?urlpath=lab/tree/demo.ipynb"

    # Given the notebook of a pushed repository open in JupyterLab, with the sidebar shown
    open_notebook(page, repo_lab)
    show_sidebar(page)

    # Then the Share section shows its Binder link (clickable: https), the badges and the
    # warning that binder/ is missing, with its fix
    link = page.locator(f"{SHARE} a.jp-Envpack-binderLink")
    link.wait_for(timeout=90_000)
    assert link.inner_text() == expected
    assert link.get_attribute("href") == expected
    markdown = page.locator(f"{SHARE} [data-badge='markdown'] .jp-Envpack-badgeText")
    assert expected in markdown.inner_text()
    missing = page.locator(f"{SHARE} [data-code='binder-missing']")
    assert "Fix:" in missing.inner_text()
    shoot(page, "sidebar-share.png", SHARE)

    # When "Write binder/ folder" is clicked
    page.locator(f"{SHARE} .jp-Envpack-writeBinder").click()

    # Then the files are written at the repository root and the warnings follow
    page.locator(f"{SHARE} .jp-Envpack-note", has_text="Wrote binder/requirements.txt").wait_for(
        timeout=90_000
    )
    assert (repo_lab.root / "binder" / "runtime.txt").read_text().startswith("python-3.")
    page.locator(f"{SHARE} [data-code='binder-uncommitted']").wait_for(timeout=90_000)
    assert page.locator(f"{SHARE} [data-code='binder-missing']").count() == 0
    assert_no_envpack_errors(page)
