"""J6: nothing blocking runs on the IOLoop thread — every SQLite call, kernel probe (snapshot,
Dockerfile) and Docker call (status) made while serving a burst of requests is recorded with the
thread it ran on; none may be the loop's."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from jupyter_envpack.operations import OperationStore

pytest_plugins = ["pytest_jupyter.jupyter_server"]

STORE_CALLS = (
    "get",
    "find",
    "non_terminal",
    "find_active",
    "events",
    "create",
    "transition",
    "update",
    "add_event",
    "claim",
    "cancel_requested",
)
SERVICE_CALLS = ("snapshot_json", "dockerfile", "engine_status", "status")


@pytest.mark.reliability("J6")
async def test_blocking_calls_never_run_on_the_ioloop(
    jp_fetch: Any, notebook: Path, wait_op: Any, envpack_service: Any, monkeypatch: Any
) -> None:
    loop_thread = threading.current_thread()
    seen: list[tuple[str, str]] = []

    def spy(owner: Any, name: str) -> None:
        real = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            seen.append((name, threading.current_thread().name))
            assert threading.current_thread() is not loop_thread, f"{name} ran on the IOLoop"
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, wrapper)

    for name in STORE_CALLS:
        spy(envpack_service.manager.store, name)
    for name in SERVICE_CALLS:
        spy(envpack_service, name)
    requests = [
        jp_fetch("envpack", "snapshot", params={"path": "nb.ipynb"}),
        jp_fetch("envpack", "dockerfile", params={"path": "nb.ipynb"}),
        jp_fetch("envpack", "status"),
        jp_fetch("envpack", "operations"),
    ]
    requests += [
        jp_fetch(
            "envpack",
            "operations",
            method="POST",
            body=json.dumps(
                {"kind": "fake", "path": "nb.ipynb", "options": {"lines": 20, "tag": i}}
            ),
        )
        for i in range(3)
    ]
    responses = await asyncio.gather(*requests)
    assert all(r.code in (200, 202) for r in responses)
    for r in responses[4:]:
        op_id = json.loads(r.body)["id"]
        await wait_op(op_id, {"succeeded"})
        await jp_fetch("envpack", "operations", op_id, "events")
        await jp_fetch("envpack", "operations", op_id, "events", params={"format": "json"})
    names = {name for name, _ in seen}
    assert {
        "snapshot_json",
        "dockerfile",
        "engine_status",
        "status",
        "create",
        "events",
        "get",
        "find",
    } <= names
    assert isinstance(envpack_service.manager.store, OperationStore)
