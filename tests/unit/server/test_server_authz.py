"""Authorization: a read-only user may look but not build or run; build/run are ``execute`` on
the ``envpack`` resource (RELIABILITY A4)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jupyter_server.auth.authorizer import Authorizer
from traitlets.config import Config

pytest_plugins = ["pytest_jupyter.jupyter_server"]

CALLS: list[tuple[str, str]] = []


class ReadOnlyAuthorizer(Authorizer):
    """Allows only ``read``; records every question."""

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        CALLS.append((action, resource))
        return action == "read"


@pytest.fixture
def jp_server_config(jp_server_config: Config) -> Config:
    jp_server_config.ServerApp.authorizer_class = ReadOnlyAuthorizer
    return jp_server_config


@pytest.mark.reliability("A4")
async def test_read_only_user(jp_fetch: Any, notebook: Path, envpack_service: Any) -> None:
    CALLS.clear()
    # reads are fine
    for parts in (("envpack", "status"), ("envpack", "operations")):
        r = await jp_fetch(*parts, raise_error=False)
        assert r.code == 200, parts
    # build, run and the fake kind are refused as "execute" on "envpack"
    for kind in ("build", "run", "fake"):
        r = await jp_fetch(
            "envpack",
            "operations",
            method="POST",
            raise_error=False,
            body=json.dumps({"kind": kind, "path": "nb.ipynb"}),
        )
        assert r.code == 403, kind
        assert json.loads(r.body)["reason"] == "forbidden"
    assert ("execute", "envpack") in CALLS
    assert envpack_service.manager.store.find() == []
    # cancelling is a write
    op, _ = envpack_service.manager.submit("fake", "nb.ipynb", {"wait": True})
    r = await jp_fetch("envpack", "operations", op.id, method="DELETE", raise_error=False)
    assert r.code == 403 and ("write", "envpack") in CALLS
    assert not envpack_service.manager.get(op.id).cancel_requested


@pytest.mark.reliability("A4", "L2")
async def test_read_only_user_gets_binder_info_without_a_kernel_probe(
    jp_fetch: Any, notebook: Path, spawned: list[list[str]]
) -> None:
    r = await jp_fetch("envpack", "binder", params={"path": "nb.ipynb"}, raise_error=False)
    assert r.code == 200
    body = json.loads(r.body)
    assert body["files"] is None and body["warnings"][0]["code"] == "no-git-repo"
    assert spawned == []  # no kernel probe and no git on behalf of a read-only user


@pytest.mark.reliability("A4", "L2")
async def test_read_only_user_starts_no_kernel_probe_for_a_snapshot_or_a_dockerfile(
    jp_fetch: Any, notebook: Path, spawned: list[list[str]]
) -> None:
    for route in ("snapshot", "dockerfile"):
        r = await jp_fetch("envpack", route, params={"path": "nb.ipynb"}, raise_error=False)
        assert r.code == 403, route
        body = json.loads(r.body)
        assert body["reason"] == "forbidden" and "'execute' permission" in body["message"]
    assert spawned == []  # no process started on behalf of a read-only user
