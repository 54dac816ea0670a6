"""A broken operations database never takes Jupyter down (RELIABILITY J2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def envpack_db(tmp_path: Path, request: Any) -> Path:
    db = tmp_path / "data" / "operations.sqlite"
    db.parent.mkdir(parents=True)
    if "unusable" in request.node.name:
        db.mkdir()  # a directory where the file should be: cannot be opened at all
    else:
        db.write_bytes(b"SQLite format 3\x00" + b"\x13" * 84)  # truncated garbage
    return db


@pytest.mark.reliability("J2")
async def test_corrupt_database_is_replaced(jp_fetch: Any, envpack_db: Path,
                                            notebook: Path) -> None:
    r = await jp_fetch("envpack", "status")
    assert json.loads(r.body)["degraded"] is None
    r = await jp_fetch("envpack", "operations", method="POST",
                       body=json.dumps({"kind": "fake", "path": "nb.ipynb"}))
    assert r.code == 202
    assert list(envpack_db.parent.glob("operations.sqlite.corrupt-*"))


@pytest.mark.reliability("J2")
async def test_unusable_database_degrades_only_operations(jp_fetch: Any, jp_root_dir: Path,
                                                          notebook: Path) -> None:
    status = json.loads((await jp_fetch("envpack", "status")).body)
    assert status["degraded"] and status["operations"] is None
    for method, body in (("GET", None), ("POST", json.dumps({"kind": "build",
                                                             "path": "nb.ipynb"}))):
        r = await jp_fetch("envpack", "operations", method=method, body=body, raise_error=False)
        assert r.code == 503
        reply = json.loads(r.body)
        assert reply["reason"] == "store-unavailable" and str(jp_root_dir) not in r.body.decode()
    # the rest of envpack and of Jupyter keeps working
    r = await jp_fetch("envpack", "snapshot", params={"path": "nb.ipynb"})
    assert r.code == 200
    r = await jp_fetch("api", "contents")
    assert r.code == 200
