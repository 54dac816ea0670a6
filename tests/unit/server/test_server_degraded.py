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
async def test_corrupt_database_is_replaced(
    jp_fetch: Any, envpack_db: Path, notebook: Path
) -> None:
    r = await jp_fetch("envpack", "status")
    assert json.loads(r.body)["degraded"] is None
    r = await jp_fetch(
        "envpack",
        "operations",
        method="POST",
        body=json.dumps({"kind": "fake", "path": "nb.ipynb"}),
    )
    assert r.code == 202
    assert list(envpack_db.parent.glob("operations.sqlite.corrupt-*"))


@pytest.mark.reliability("J2")
async def test_unusable_database_degrades_only_operations(
    jp_fetch: Any, jp_root_dir: Path, notebook: Path
) -> None:
    status = json.loads((await jp_fetch("envpack", "status")).body)
    assert status["degraded"] and status["operations"] is None
    for method, body in (
        ("GET", None),
        ("POST", json.dumps({"kind": "build", "path": "nb.ipynb"})),
    ):
        r = await jp_fetch("envpack", "operations", method=method, body=body, raise_error=False)
        assert r.code == 503
        reply = json.loads(r.body)
        assert reply["reason"] == "store-unavailable" and str(jp_root_dir) not in r.body.decode()
    # the rest of envpack and of Jupyter keeps working
    r = await jp_fetch("envpack", "snapshot", params={"path": "nb.ipynb"})
    assert r.code == 200
    r = await jp_fetch("api", "contents")
    assert r.code == 200


@pytest.mark.reliability("J3", "J6")
async def test_a_locked_database_is_503_after_busy_timeout(
    jp_fetch: Any, notebook: Path, envpack_service: Any
) -> None:
    import asyncio
    import sqlite3
    import time

    # Given another process holding the write lock
    other = sqlite3.connect(envpack_service.manager.store.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        write = asyncio.ensure_future(
            jp_fetch(
                "envpack",
                "operations",
                method="POST",
                raise_error=False,
                body=json.dumps({"kind": "fake", "path": "nb.ipynb"}),
            )
        )
        # the IOLoop is not blocked meanwhile: status answers at once
        await asyncio.sleep(0.2)
        probe = time.monotonic()
        assert (await jp_fetch("api", "status")).code == 200
        assert time.monotonic() - probe < 1.0
        # When the write gives up: 503 after the busy timeout, not a hang
        r = await write
        assert r.code == 503 and json.loads(r.body)["reason"] == "store-unavailable"
        assert time.monotonic() - started < 9
    finally:
        other.execute("ROLLBACK")
        other.close()
    r = await jp_fetch(
        "envpack",
        "operations",
        method="POST",
        body=json.dumps({"kind": "fake", "path": "nb.ipynb"}),
    )
    assert r.code == 202
