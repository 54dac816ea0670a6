"""Every /envpack route and status code through a real jupyter_server (pytest-jupyter).

Operations use the ``fake`` kind (conftest); snapshot and Dockerfile call the real core (they
need no Docker engine). RELIABILITY A5, A7, B1, B2, B4, B6, J2.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["pytest_jupyter.jupyter_server"]


async def call(jp_fetch: Any, *parts: str, **kwargs: Any) -> tuple[int, Any, Any]:
    """Fetch without raising; return (status, parsed JSON body or text, response)."""
    r = await jp_fetch(*parts, raise_error=False, **kwargs)
    text = r.body.decode("utf-8", "replace")
    try:
        return r.code, json.loads(text), r
    except ValueError:
        return r.code, text, r


def post_op(body: Any) -> dict[str, Any]:
    raw = body if isinstance(body, bytes | str) else json.dumps(body)
    return {"method": "POST", "body": raw}


def assert_clean_error(body: Any, root: Path) -> None:
    """A JSON error: reason + message, no traceback, no server path."""
    assert isinstance(body, dict), body
    assert set(body) >= {"error", "reason", "message", "hint"}
    assert not body.get("traceback")
    assert str(root) not in json.dumps(body)


async def test_status(jp_fetch: Any) -> None:
    code, body, _ = await call(jp_fetch, "envpack", "status")
    assert code == 200
    assert body["kinds"] == ["build", "fake", "run"]
    assert body["operations"] == {"queued": 0, "running": 0, "limit": 2}
    assert body["degraded"] is None
    assert set(body["engine"]) >= {"reachable", "error"}


async def test_unknown_route_is_404(jp_fetch: Any) -> None:
    code, _, _ = await call(jp_fetch, "envpack", "nope")
    assert code == 404


async def test_snapshot_and_dockerfile_of_a_real_notebook(
    jp_fetch: Any, notebook: Path, jp_root_dir: Path
) -> None:
    code, body, _ = await call(jp_fetch, "envpack", "snapshot", params={"path": "nb.ipynb"})
    assert code == 200, body
    assert body["schema"] == "envpack.snapshot/1" and body["notebook"] == "nb.ipynb"
    assert str(jp_root_dir) not in json.dumps(body)
    code, text, r = await call(
        jp_fetch,
        "envpack",
        "dockerfile",
        params={"path": "nb.ipynb", "base_image": "envpack-test/debian-python:bookworm"},
    )
    assert code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    assert "FROM envpack-test/debian-python:bookworm" in text


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({}, 400),
        ({"path": "missing.ipynb"}, 404),
        ({"path": "nb.ipynb", "kernel": "../x"}, 400),
        ({"path": "nb.ipynb", "reconstruct": "1", "as_of": "2019-13-40x"}, 400),
    ],
)
async def test_snapshot_bad_requests(
    jp_fetch: Any, notebook: Path, jp_root_dir: Path, params: dict, status: int
) -> None:
    for route in ("snapshot", "dockerfile"):
        code, body, _ = await call(jp_fetch, "envpack", route, params=params)
        assert code == status, (route, body)
        assert_clean_error(body, jp_root_dir)


async def test_dockerfile_refuses_a_bad_base_image(jp_fetch: Any, notebook: Path) -> None:
    code, body, _ = await call(
        jp_fetch, "envpack", "dockerfile", params={"path": "nb.ipynb", "base_image": "a b\nRUN x"}
    )
    assert code == 400 and body["reason"] == "invalid-input"


@pytest.mark.reliability("B1", "B2", "B4")
@pytest.mark.parametrize(
    "path",
    [
        "../outside/secret.ipynb",
        "sub/../../outside/secret.ipynb",
        "/etc/passwd",
        "%2e%2e/outside/secret.ipynb",
        "..%2foutside/secret.ipynb",
        "C:\\x",
        "\\\\srv\\share\\x",
        "a\x00.ipynb",
        "x" * 5000,
        "../root_dirtest/s.ipynb",
        ".hidden/x.ipynb",
        "link.ipynb",
    ],
)
async def test_traversal_is_404_and_never_reads(
    jp_fetch: Any, jp_root_dir: Path, envpack_service: Any, path: str
) -> None:
    # Given a canary outside the root, a sibling with the root's name as prefix, a hidden file
    # and a symlink leaving the root
    canary = secrets.token_hex(16)
    outside = jp_root_dir.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.ipynb").write_text(canary)
    sibling = jp_root_dir.parent / "root_dirtest"
    sibling.mkdir(exist_ok=True)
    (sibling / "s.ipynb").write_text(canary)
    (jp_root_dir / ".hidden").mkdir(exist_ok=True)
    (jp_root_dir / ".hidden" / "x.ipynb").write_text(canary)
    if not (jp_root_dir / "link.ipynb").is_symlink():
        (jp_root_dir / "link.ipynb").symlink_to(outside / "secret.ipynb")
    # When every path-taking route is called with it
    responses = [
        await call(jp_fetch, "envpack", "snapshot", params={"path": path}),
        await call(jp_fetch, "envpack", "dockerfile", params={"path": path}),
        await call(jp_fetch, "envpack", "operations", **post_op({"kind": "fake", "path": path})),
        await call(jp_fetch, "envpack", "operations", **post_op({"kind": "run", "path": path})),
    ]
    # Then each is a clean 404, the canary never appears, and no operation was created
    for code, body, _ in responses:
        assert code == 404, body
        assert canary not in json.dumps(body)
        assert_clean_error(body, jp_root_dir)
    assert envpack_service.manager.store.find() == []


@pytest.mark.reliability("B6")
@pytest.mark.timeout(20)
async def test_fifo_and_directories_are_400(jp_fetch: Any, jp_root_dir: Path) -> None:
    os.mkfifo(jp_root_dir / "fifo.ipynb")
    (jp_root_dir / "dir.ipynb").mkdir()
    for path in ("fifo.ipynb", "dir.ipynb"):
        code, body, _ = await call(jp_fetch, "envpack", "snapshot", params={"path": path})
        assert code == 400, body
        code, body, _ = await call(
            jp_fetch, "envpack", "operations", **post_op({"kind": "build", "path": path})
        )
        assert code == 400, body


@pytest.mark.reliability("A5")
@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1]",
        b"null",
        b"\xff",
        b'{"kind": "fake"}',
        b'{"kind": 1, "path": "nb.ipynb"}',
        b'{"kind": "fake", "path": "nb.ipynb", "extra": 1}',
        b'{"kind": "fake", "path": "nb.ipynb", "options": {"evil": 1}}',
        b'{"kind": "nope", "path": "nb.ipynb"}',
        b'{"kind": "fake", "path": NaN}',
        b'{"kind": "build", "path": "nb.ipynb", "options": {"deadline": "x"}}',
        b'{"kind": "build", "path": "nb.ipynb", "options": {"base_image": "a\\nRUN x"}}',
        b'{"kind": "run", "path": "nb.ipynb", "options": {"parameters": {"a b": 1}}}',
        b'{"kind": "run", "path": "nb.ipynb", "options": {"output": "../out.ipynb"}}',
        b'{"kind": "build", "path": "nb.ipynb", "options": {"index_url": "http://x"}}',
        b'{"a":' * 200 + b"1" + b"}" * 200,
    ],
)
async def test_malformed_bodies_are_4xx(
    jp_fetch: Any, notebook: Path, jp_root_dir: Path, envpack_service: Any, body: bytes
) -> None:
    code, reply, _ = await call(jp_fetch, "envpack", "operations", **post_op(body))
    assert code in (400, 404), reply
    assert_clean_error(reply, jp_root_dir)
    assert envpack_service.manager.store.find() == []


@pytest.mark.reliability("A5")
async def test_huge_body_is_413(jp_fetch: Any, notebook: Path, jp_root_dir: Path) -> None:
    body = json.dumps({"kind": "fake", "path": "nb.ipynb", "options": {"tag": "x" * 10_000_000}})
    code, reply, _ = await call(jp_fetch, "envpack", "operations", **post_op(body))
    assert code == 413
    assert not reply.get("traceback")


async def test_operation_lifecycle(
    jp_fetch: Any, notebook: Path, wait_op: Any, jp_base_url: str
) -> None:
    # POST → 202 + Location
    code, op, r = await call(
        jp_fetch,
        "envpack",
        "operations",
        **post_op({"kind": "fake", "path": "nb.ipynb", "options": {"lines": 2}}),
    )
    assert code == 202
    assert r.headers["Location"] == f"{jp_base_url}envpack/operations/{op['id']}"
    assert op["state"] == "queued" and op["kind"] == "fake" and op["path"] == "nb.ipynb"
    assert op["handle"]["labels"] == {"org.jupyter.envpack.operation": op["id"]}
    done = await wait_op(op["id"], {"succeeded"})
    assert done["result"]["ok"] is True and done["progress"] == 1.0
    # list, filters
    code, listing, _ = await call(
        jp_fetch, "envpack", "operations", params={"state": "succeeded", "kind": "fake"}
    )
    assert code == 200 and [o["id"] for o in listing["operations"]] == [op["id"]]
    for params in ({"state": "bogus"}, {"kind": "bogus"}, {"limit": "many"}):
        code, body, _ = await call(jp_fetch, "envpack", "operations", params=params)
        assert code == 400, params
    # finished → DELETE is 409
    code, body, _ = await call(jp_fetch, "envpack", "operations", op["id"], method="DELETE")
    assert code == 409 and body["reason"] == "conflict"


async def test_unknown_operation_is_404(jp_fetch: Any) -> None:
    for method in ("GET", "DELETE"):
        for op_id in ("0" * 32, "nope", "..%2f..%2fetc"):
            code, body, _ = await call(jp_fetch, "envpack", "operations", op_id, method=method)
            assert code == 404, (method, op_id, body)
    code, _, _ = await call(jp_fetch, "envpack", "operations", "0" * 32, "events")
    assert code == 404


@pytest.mark.reliability("F6", "F7")
async def test_attach_and_cancel_through_the_api(
    jp_fetch: Any, notebook: Path, wait_op: Any
) -> None:
    body = {"kind": "fake", "path": "nb.ipynb", "options": {"wait": True}}
    code, first, _ = await call(jp_fetch, "envpack", "operations", **post_op(body))
    code2, second, r = await call(jp_fetch, "envpack", "operations", **post_op(body))
    assert (code, code2) == (202, 200) and second["id"] == first["id"]
    assert r.headers["Location"].endswith(first["id"])
    await wait_op(first["id"], {"running"})
    code, cancelled, _ = await call(jp_fetch, "envpack", "operations", first["id"], method="DELETE")
    assert code == 202 and cancelled["cancel_requested"] is True
    done = await wait_op(first["id"], {"cancelled"})
    assert done["state"] == "cancelled"
    code, again, _ = await call(jp_fetch, "envpack", "operations", first["id"], method="DELETE")
    assert code == 200 and again["state"] == "cancelled"


def parse_sse(text: str) -> list[dict[str, Any]]:
    frames = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        if "data" in fields:
            frames.append(fields)
    return frames


@pytest.mark.reliability("A7")
async def test_events_stream_and_resume(jp_fetch: Any, notebook: Path, wait_op: Any) -> None:
    code, op, _ = await call(
        jp_fetch,
        "envpack",
        "operations",
        **post_op({"kind": "fake", "path": "nb.ipynb", "options": {"lines": 3}}),
    )
    await wait_op(op["id"], {"succeeded"})
    # the whole stream: replayed events then `end`
    code, text, r = await call(jp_fetch, "envpack", "operations", op["id"], "events")
    assert code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    frames = parse_sse(text)
    assert frames[-1]["event"] == "end" and json.loads(frames[-1]["data"]) == {"state": "succeeded"}
    events = [json.loads(f["data"]) for f in frames[:-1]]
    assert [e["seq"] for e in events] == [int(f["id"]) for f in frames[:-1]]
    states = [e["state"] for e in events if e["type"] == "state"]
    assert states == ["queued", "running", "succeeded"]
    logs = [e["message"] for e in events if e.get("kind") == "log"]
    assert logs[0] == "line 0 <script>alert(1)</script>"  # text in JSON, never HTML
    # resume with Last-Event-ID and with ?after=
    middle = events[2]["seq"]
    _, text2, _ = await call(
        jp_fetch,
        "envpack",
        "operations",
        op["id"],
        "events",
        headers={"Last-Event-ID": str(middle)},
    )
    resumed = [json.loads(f["data"]) for f in parse_sse(text2)[:-1]]
    assert resumed == events[3:]
    _, page, _ = await call(
        jp_fetch,
        "envpack",
        "operations",
        op["id"],
        "events",
        params={"after": str(middle), "format": "json"},
    )
    assert page["events"] == events[3:] and page["done"] is True
    assert page["last"] == events[-1]["seq"] and page["state"] == "succeeded"
    code, _body, _ = await call(
        jp_fetch, "envpack", "operations", op["id"], "events", params={"after": "-1"}
    )
    assert code == 400


async def test_events_follow_a_live_operation(
    jp_fetch: Any, notebook: Path, fake_work: Any, wait_op: Any
) -> None:
    import asyncio

    _, op, _ = await call(
        jp_fetch,
        "envpack",
        "operations",
        **post_op({"kind": "fake", "path": "nb.ipynb", "options": {"wait": True, "lines": 2}}),
    )
    await wait_op(op["id"], {"running"})
    stream = asyncio.ensure_future(call(jp_fetch, "envpack", "operations", op["id"], "events"))
    await asyncio.sleep(0.3)
    assert not stream.done()  # still following
    fake_work.release.set()
    _, text, _ = await asyncio.wait_for(stream, 10)
    frames = parse_sse(text)
    assert frames[-1]["event"] == "end"
    assert sum(json.loads(f["data"]).get("kind") == "log" for f in frames[:-1]) == 2


@pytest.mark.reliability("A6")
async def test_internal_errors_leak_nothing(
    jp_fetch: Any,
    notebook: Path,
    jp_root_dir: Path,
    wait_op: Any,
    envpack_service: Any,
    monkeypatch: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    code, op, _ = await call(
        jp_fetch,
        "envpack",
        "operations",
        **post_op({"kind": "fake", "path": "nb.ipynb", "options": {"crash": True}}),
    )
    done = await wait_op(op["id"], {"failed"})
    assert done["error"]["reason"] == "internal"
    assert str(jp_root_dir) not in json.dumps(done)

    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"secret detail {jp_root_dir}")

    monkeypatch.setattr(envpack_service, "snapshot_json", boom)
    code, body, _ = await call(
        jp_fetch,
        "envpack",
        "snapshot",
        params={"path": "nb.ipynb"},
        headers={"Authorization": "token CANARY-not-the-token"},
    )
    assert code == 403, body  # a wrong token never reaches the handler
    code, body, _ = await call(jp_fetch, "envpack", "snapshot", params={"path": "nb.ipynb"})
    assert code == 500
    assert body["reason"] == "internal" and "secret detail" not in json.dumps(body)
    assert_clean_error(body, jp_root_dir)
    # the operator's log has the detail; no log line ever holds the presented token
    assert "secret detail" in caplog.text
    assert "CANARY-not-the-token" not in caplog.text
    assert all("CANARY-not-the-token" not in str(r.args) for r in caplog.records)


@pytest.mark.reliability("F1")
async def test_engine_down_is_a_fast_503_and_a_failed_run(
    jp_fetch: Any, notebook: Path, wait_op: Any, jp_root_dir: Path, monkeypatch: Any
) -> None:
    import time

    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/envpack-no-such-engine.sock")
    started = time.monotonic()
    code, status, _ = await call(jp_fetch, "envpack", "status")
    assert code == 200 and time.monotonic() - started < 6
    assert status["engine"]["reachable"] is False
    assert status["engine"]["error"]["reason"] == "engine-unavailable"
    code, op, _ = await call(
        jp_fetch,
        "envpack",
        "operations",
        **post_op({"kind": "run", "path": "nb.ipynb", "options": {"image": "envpack/nb:0123"}}),
    )
    assert code == 202
    done = await wait_op(op["id"], {"failed"})
    assert done["error"]["reason"] == "engine-unavailable"
    assert str(jp_root_dir) not in json.dumps(done)


@pytest.mark.reliability("F7", "F8")
async def test_identical_runs_attach_while_queued(
    jp_fetch: Any, notebook: Path, wait_op: Any
) -> None:
    # Given both workers busy (limit 2)
    for tag in (1, 2):
        code, busy, _ = await call(
            jp_fetch,
            "envpack",
            "operations",
            **post_op({"kind": "fake", "path": "nb.ipynb", "options": {"wait": True, "tag": tag}}),
        )
        await wait_op(busy["id"], {"running"})
    # When the same run is asked twice, it is queued once and the second call attaches
    body = {"kind": "run", "path": "nb.ipynb", "options": {"image": "envpack/nb:1"}}
    code1, first, _ = await call(jp_fetch, "envpack", "operations", **post_op(body))
    code2, second, _ = await call(jp_fetch, "envpack", "operations", **post_op(body))
    assert (code1, code2) == (202, 200) and first["id"] == second["id"]
    assert second["state"] == "queued"
    code, listing, _ = await call(jp_fetch, "envpack", "operations", params={"kind": "run"})
    assert len(listing["operations"]) == 1
    code, cancelled, _ = await call(jp_fetch, "envpack", "operations", first["id"], method="DELETE")
    assert code == 202 and cancelled["state"] == "cancelled"


async def test_a_client_leaving_the_stream_is_forgotten(
    jp_fetch: Any,
    notebook: Path,
    wait_op: Any,
    jp_http_port: int,
    jp_base_url: str,
    jp_auth_header: dict,
    envpack_service: Any,
) -> None:
    import asyncio

    _, op, _ = await call(
        jp_fetch,
        "envpack",
        "operations",
        **post_op({"kind": "fake", "path": "nb.ipynb", "options": {"wait": True}}),
    )
    await wait_op(op["id"], {"running"})
    reader, writer = await asyncio.open_connection("127.0.0.1", jp_http_port)
    writer.write(
        (
            f"GET {jp_base_url}envpack/operations/{op['id']}/events HTTP/1.1\r\n"
            f"Host: localhost:{jp_http_port}\r\n"
            f"Authorization: {jp_auth_header['Authorization']}\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"event: state"), 10)
    assert b"200 OK" in head and b"text/event-stream" in head
    listeners = envpack_service.manager._listeners  # the stream's subscription
    assert listeners[op["id"]]
    writer.close()
    for _ in range(100):
        if not listeners[op["id"]]:
            break
        await asyncio.sleep(0.05)
    assert not listeners[op["id"]]  # unsubscribed at once, not at the next keep-alive


async def test_long_logs_stream_in_pages(
    jp_fetch: Any, notebook: Path, wait_op: Any, monkeypatch: Any
) -> None:
    from jupyter_envpack.server import handlers

    monkeypatch.setattr(handlers, "EVENT_PAGE", 4)
    _, op, _ = await call(
        jp_fetch,
        "envpack",
        "operations",
        **post_op({"kind": "fake", "path": "nb.ipynb", "options": {"lines": 10}}),
    )
    await wait_op(op["id"], {"succeeded"})
    _, text, _ = await call(jp_fetch, "envpack", "operations", op["id"], "events")
    frames = parse_sse(text)
    assert sum(json.loads(f["data"]).get("kind") == "log" for f in frames[:-1]) == 10
    assert frames[-1]["event"] == "end"
    # JSON pages: `done` only on the last page
    after, pages = 0, 0
    while True:
        _, page, _ = await call(
            jp_fetch,
            "envpack",
            "operations",
            op["id"],
            "events",
            params={"format": "json", "after": str(after)},
        )
        pages += 1
        after = page["last"]
        if page["done"]:
            break
        assert len(page["events"]) == 4
    assert pages >= 4


async def test_run_with_engine_venv_needs_no_docker(
    jp_fetch: Any,
    notebook: Path,
    wait_op: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    monkeypatch.setenv("ENVPACK_VENV_CACHE", str(tmp_path / "venvs"))
    code, status, _ = await call(jp_fetch, "envpack", "status")
    assert status["engine"]["reachable"] is False and status["venv_available"] is True
    body = {"kind": "run", "path": "nb.ipynb", "options": {"engine": "venv"}}
    code, op, _ = await call(jp_fetch, "envpack", "operations", **post_op(body))
    assert code in (200, 201, 202), op
    done = await wait_op(op["id"], {"succeeded", "failed"}, timeout=300)
    assert done["state"] == "succeeded", done
    report = done["result"]["report"]
    assert report["engine"] == "venv" and report["run_status"] == "completed"
    assert done["result"]["engine"] == "venv"
    code, bad, _ = await call(
        jp_fetch, "envpack", "operations", **post_op({**body, "options": {"engine": "lxc"}})
    )
    assert code == 400, bad
