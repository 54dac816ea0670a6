"""``/envpack/binder`` (GET link/badges/warnings, POST writes binder/) and the ``backends`` part
of ``/envpack/status``, through a real jupyter_server (pytest-jupyter) and real git repositories
inside the contents root. RELIABILITY A1, A2, B1."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import nbformat
import pytest
from test_server_auth import _browser_session

from jupyter_envpack.server.sharing import backends_json

pytest_plugins = ["pytest_jupyter.jupyter_server"]

REMOTE = "https://github.com/envpack-test/demo"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


def write_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells.append(nbformat.v4.new_code_cell("import json\nprint(json.dumps(1))"))
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def repo(jp_root_dir: Path, tmp_path: Path) -> Path:
    """The contents root is a git repository with ``notes/analysis.ipynb`` committed and pushed
    to a GitHub-like https remote (pushes land in a local bare repository)."""
    bare = tmp_path / "origin.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    root = jp_root_dir
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "t@example.org")
    git(root, "config", "user.name", "Tester")
    write_notebook(root / "notes" / "analysis.ipynb")
    git(root, "add", ".")
    git(root, "commit", "-qm", "notebook")
    git(root, "remote", "add", "origin", REMOTE)
    git(root, "config", "remote.origin.pushurl", str(bare))
    git(root, "push", "-q", "origin", "HEAD:main")
    git(root, "update-ref", "refs/remotes/origin/main", "HEAD")
    return root


async def call(jp_fetch: Any, *parts: str, **kwargs: Any) -> tuple[int, Any]:
    r = await jp_fetch(*parts, raise_error=False, **kwargs)
    text = r.body.decode("utf-8", "replace")
    try:
        return r.code, json.loads(text)
    except ValueError:
        return r.code, text


def assert_no_server_path(body: Any, root: Path) -> None:
    assert str(root) not in json.dumps(body), body


async def test_link_and_badges_of_a_pushed_notebook(jp_fetch: Any, repo: Path) -> None:
    code, body = await call(
        jp_fetch, "envpack", "binder", params={"path": "notes/analysis.ipynb", "snapshot": "0"}
    )
    assert code == 200, body
    sha = git(repo, "rev-parse", "HEAD")
    assert body["link"] == (
        f"https://mybinder.org/v2/gh/envpack-test/demo/{sha}?urlpath=lab/tree/notes/analysis.ipynb"
    )
    assert body["link"] in body["badges"]["markdown"]
    assert body["link"] in body["badges"]["rst"]
    assert body["remote"] == {"provider": "gh", "url": REMOTE}
    assert body["path"] == "notes/analysis.ipynb"
    assert body["files"] is None  # snapshot=0: no environment probe
    assert [w["code"] for w in body["warnings"]] == ["binder-missing"]
    assert all(w["hint"] for w in body["warnings"])
    assert_no_server_path(body, repo)


async def test_host_branch_and_ref_arguments(jp_fetch: Any, repo: Path) -> None:
    code, body = await call(
        jp_fetch,
        "envpack",
        "binder",
        params={
            "path": "notes/analysis.ipynb",
            "snapshot": "0",
            "branch": "1",
            "host": "https://binder.example.org",
        },
    )
    assert code == 200, body
    assert body["ref"] == "main"
    assert body["link"].startswith("https://binder.example.org/v2/gh/envpack-test/demo/main?")
    code, body = await call(
        jp_fetch,
        "envpack",
        "binder",
        params={"path": "notes/analysis.ipynb", "snapshot": "0", "ref": "v1.0"},
    )
    assert code == 200 and body["ref"] == "v1.0", body


@pytest.mark.parametrize(
    "params",
    [
        {"host": "http://binder.example.org"},
        {"host": "https://user:pw@binder.example.org"},
        {"ref": "bad\tref"},
        {"kernel": "../x"},
    ],
)
async def test_bad_host_ref_or_kernel_is_400(
    jp_fetch: Any, repo: Path, params: dict[str, str]
) -> None:
    code, body = await call(
        jp_fetch,
        "envpack",
        "binder",
        params={"path": "notes/analysis.ipynb", "snapshot": "0", **params},
    )
    assert code == 400, body
    assert body["reason"] == "invalid-input"
    assert_no_server_path(body, repo)


@pytest.mark.reliability("B1")
@pytest.mark.parametrize(
    "path",
    ["missing.ipynb", "../outside.ipynb", "/etc/passwd", "notes/../../x.ipynb", ".git/config"],
)
async def test_missing_or_escaping_paths_are_404(jp_fetch: Any, repo: Path, path: str) -> None:
    code, body = await call(jp_fetch, "envpack", "binder", params={"path": path, "snapshot": "0"})
    assert code == 404, body
    assert_no_server_path(body, repo)
    code, body = await call(
        jp_fetch, "envpack", "binder", method="POST", body=json.dumps({"path": path})
    )
    assert code == 404, body
    assert not (repo / "binder").exists()


async def test_path_is_required_and_post_body_is_checked(jp_fetch: Any, repo: Path) -> None:
    code, _ = await call(jp_fetch, "envpack", "binder")
    assert code == 400
    for body in (
        "not json",
        "[]",
        json.dumps({"path": 3}),
        json.dumps({"path": "notes/analysis.ipynb", "extra": 1}),
    ):
        code, reply = await call(jp_fetch, "envpack", "binder", method="POST", body=body)
        assert code == 400, (body, reply)


async def test_outside_git_there_is_no_link_but_a_warning(
    jp_fetch: Any, jp_root_dir: Path, notebook: Path
) -> None:
    code, body = await call(
        jp_fetch, "envpack", "binder", params={"path": "nb.ipynb", "snapshot": "0"}
    )
    assert code == 200, body
    assert body["link"] is None and body["badges"] is None
    assert body["warnings"][0]["code"] == "no-git-repo"


async def test_write_creates_the_binder_folder_at_the_repository_root(
    jp_fetch: Any, repo: Path
) -> None:
    code, body = await call(
        jp_fetch,
        "envpack",
        "binder",
        method="POST",
        body=json.dumps({"path": "notes/analysis.ipynb"}),
    )
    assert code == 200, body
    assert body["folder"] == "binder"
    assert body["written"] == ["binder/requirements.txt", "binder/runtime.txt"]
    assert body["removed"] == []
    for name in body["written"]:
        assert (repo / name).is_file()
    runtime = (repo / "binder" / "runtime.txt").read_text()
    assert runtime.startswith("python-3.")
    assert body["files"]["runtime.txt"] == runtime
    assert_no_server_path(body, repo)
    # the link now reports the folder as uncommitted (with the environment probed)
    code, info = await call(jp_fetch, "envpack", "binder", params={"path": "notes/analysis.ipynb"})
    assert code == 200, info
    assert info["files"]["runtime.txt"] == runtime
    assert "binder-missing" not in [w["code"] for w in info["warnings"]]


async def test_write_refuses_a_repository_above_the_server_root(
    jp_fetch: Any, jp_root_dir: Path, notebook: Path
) -> None:
    parent = jp_root_dir.parent
    git(parent, "init", "-q", "-b", "main")
    try:
        code, body = await call(
            jp_fetch, "envpack", "binder", method="POST", body=json.dumps({"path": "nb.ipynb"})
        )
        assert code == 400, body
        assert "repository's root" in body["hint"]
        assert not (parent / "binder").exists() and not (jp_root_dir / "binder").exists()
    finally:
        subprocess.run(["rm", "-rf", str(parent / ".git")], check=True)


@pytest.mark.reliability("L2")
async def test_a_hostile_repository_runs_nothing_through_the_route(
    jp_fetch: Any, jp_root_dir: Path, hostile_repo: Any, spawned: list[list[str]]
) -> None:
    write_notebook(jp_root_dir / "analysis.ipynb")
    marks = hostile_repo(jp_root_dir)
    spawned.clear()  # the fixture's own git calls
    code, body = await call(
        jp_fetch, "envpack", "binder", params={"path": "analysis.ipynb", "snapshot": "0"}
    )
    assert code == 200, body
    assert "notebook-uncommitted" in [w["code"] for w in body["warnings"]]
    assert body["link"].startswith("https://mybinder.org/v2/gh/envpack-test/demo/")
    assert spawned == []  # the sidebar's automatic refresh starts no process at all
    code, body = await call(jp_fetch, "envpack", "binder", params={"path": "analysis.ipynb"})
    assert code == 200, body
    assert list(marks.iterdir()) == []


@pytest.mark.reliability("A1")
async def test_binder_needs_a_token(jp_fetch: Any, repo: Path) -> None:
    for method, body in (("GET", None), ("POST", json.dumps({"path": "notes/analysis.ipynb"}))):
        code, _ = await call(
            jp_fetch,
            "envpack",
            "binder",
            method=method,
            body=body,
            params={"path": "notes/analysis.ipynb"},
            headers={"Authorization": ""},
        )
        assert code == 403, method
    assert not (repo / "binder").exists()


@pytest.mark.reliability("A2")
async def test_cookie_writes_of_binder_need_xsrf(
    jp_fetch: Any, jp_serverapp: Any, repo: Path
) -> None:
    cookies = await _browser_session(jp_fetch, jp_serverapp.identity_provider.token)
    base = {"Authorization": "", "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
    body = json.dumps({"path": "notes/analysis.ipynb"})
    code, _ = await call(
        jp_fetch,
        "envpack",
        "binder",
        headers=dict(base),
        params={"path": "notes/analysis.ipynb", "snapshot": "0"},
    )
    assert code == 200  # a read needs the cookie only
    for extra in ({}, {"X-XSRFToken": "forged"}):
        code, _ = await call(
            jp_fetch, "envpack", "binder", method="POST", body=body, headers={**base, **extra}
        )
        assert code == 403, extra
    assert not (repo / "binder").exists()
    code, reply = await call(
        jp_fetch,
        "envpack",
        "binder",
        method="POST",
        body=body,
        headers={**base, "X-XSRFToken": cookies["_xsrf"]},
    )
    assert code == 200, reply
    assert (repo / "binder" / "requirements.txt").is_file()


async def test_status_lists_the_cluster_backends(jp_fetch: Any, envpack_service: Any) -> None:
    from jupyter_envpack.cluster.operation import job_kind

    envpack_service.manager.register_kind(job_kind)
    code, body = await call(jp_fetch, "envpack", "status")
    assert code == 200, body
    assert "job" in body["kinds"]
    assert {"swarm", "kubernetes"} <= set(body["backends"])
    for info in body["backends"].values():
        assert isinstance(info["available"], bool)
        assert info["available"] or info["reason"]
    assert body["default_backend"] == "swarm"


async def test_status_without_the_job_kind_has_no_backends(jp_fetch: Any) -> None:
    code, body = await call(jp_fetch, "envpack", "status")
    assert code == 200 and body["backends"] == {}, body


def test_backend_check_failures_become_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    import jupyter_envpack.cluster as cluster

    def boom(config: Any = None, client: Any = None) -> dict[str, Any]:
        raise RuntimeError("kaput")

    monkeypatch.setattr(cluster, "backend_availability", boom)

    from types import SimpleNamespace

    config = SimpleNamespace(cluster_backends={"swarm": "x", "mine": "y"})
    found = backends_json(config, ["build", "job"])
    assert set(found) == {"swarm", "mine"}
    assert all(not v["available"] and "RuntimeError" in v["reason"] for v in found.values())


async def test_configured_binder_host_is_the_default(
    jp_fetch: Any, repo: Path, jp_serverapp: Any
) -> None:
    from jupyter_envpack.server.extension import EnvpackExtension

    ext = next(
        e
        for e in jp_serverapp.extension_manager.extension_apps.get("jupyter_envpack", set())
        if isinstance(e, EnvpackExtension)
    )
    ext.service.config.binder_host = "https://hub.example.org"
    code, body = await call(
        jp_fetch, "envpack", "binder", params={"path": "notes/analysis.ipynb", "snapshot": "0"}
    )
    assert code == 200, body
    assert body["link"].startswith("https://hub.example.org/v2/gh/envpack-test/demo/")
