"""The jest fake server is checked against this real server's answers (issue 11 item 8).

One real run of the REST API (in-process jupyter_server, the real build and run kinds, the real
engine) records what the sidebar's client reads: status, snapshot, Dockerfile, Binder, a build
and a run operation, the list, the event stream and the error bodies. The recordings live in
``labextension/src/__tests__/recorded/``; the jest fake replays them and its own builders are
checked against their shapes (``recorded.spec.ts``).

This test fails when a recording is stale: a key added, removed or changing type. Rewrite them
with ``ENVPACK_RECORD=1`` and commit the JSON together with the server change.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from test_server_docker import TERMINAL, wait_op, write_notebook

pytest_plugins = ["pytest_jupyter.jupyter_server"]
pytestmark = pytest.mark.docker

RECORDED = Path(__file__).resolve().parents[3] / "labextension" / "src" / "__tests__" / "recorded"
_OP_ID = re.compile(r"\b[0-9a-f]{32}\b")
_VOLATILE = {"created", "updated", "finished", "duration", "seconds", "elapsed", "time"}


def normalise(value: Any, root: str) -> Any:
    """The answer with what differs run to run replaced (ids, times, the temporary root)."""
    if isinstance(value, dict):
        return {
            k: (0 if k in _VOLATILE and isinstance(v, int | float) else normalise(v, root))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [normalise(v, root) for v in value]
    if isinstance(value, str):
        value = value.replace(root, "<server-root>").replace(sys.base_prefix, "<python>")
        return _OP_ID.sub("0" * 32, value)
    return value


def shape(value: Any) -> Any:
    """Keys and JSON types, recursively; a list's items merged; ``null`` fits anything."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        merged: Any = None
        for item in value:
            merged = _merge(merged, shape(item))
        return [merged]
    if value is None:
        return None
    return {bool: "boolean", str: "string", int: "number", float: "number"}[type(value)]


def _merge(a: Any, b: Any) -> Any:
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: _merge(a.get(k), b.get(k)) for k in a.keys() | b.keys()}
    return b if a is None else a


def differences(old: Any, new: Any, where: str = "$") -> list[str]:
    """Where ``new``'s shape departs from ``old``'s (``None`` on either side fits)."""
    if old is None or new is None:
        return []
    if isinstance(old, dict) and isinstance(new, dict):
        found = [f"{where}.{k}: only recorded" for k in sorted(old.keys() - new.keys())]
        found += [f"{where}.{k}: new in the server" for k in sorted(new.keys() - old.keys())]
        for k in sorted(old.keys() & new.keys()):
            found += differences(old[k], new[k], f"{where}.{k}")
        return found
    if isinstance(old, list) and isinstance(new, list):
        return differences(old[0], new[0], f"{where}[]")
    return [] if old == new else [f"{where}: {old} became {new}"]


class Recorder:
    """Collects ``name → {method, route, status, body}`` from real answers."""

    def __init__(self, jp_fetch: Any, root: Path) -> None:
        self.jp_fetch, self.root = jp_fetch, str(root)
        self.answers: dict[str, dict[str, Any]] = {}

    async def __call__(
        self, name: str, method: str, *parts: str, body: Any = None, **params: str
    ) -> Any:
        r = await self.jp_fetch(
            "envpack",
            *parts,
            method=method,
            params=params or None,
            body=None if body is None else json.dumps(body),
            raise_error=False,
        )
        text = r.body.decode("utf-8")
        is_json = "json" in r.headers.get("Content-Type", "")
        answer = json.loads(text) if is_json and text else text
        route = "/".join(parts)
        self.answers[name] = {
            "method": method,
            "route": route if not route.startswith("operations/") else _generic(route),
            "status": r.code,
            "body": normalise(answer, self.root),
        }
        return answer


def _generic(route: str) -> str:
    return _OP_ID.sub(":id", route)


async def record_a_session(record: Recorder, image: str) -> None:
    """What the sidebar does for one notebook, plus the errors it must show."""
    await record("status", "GET", "status")
    await record("snapshot", "GET", "snapshot", path="nb.ipynb")
    await record("dockerfile", "GET", "dockerfile", path="nb.ipynb")
    await record("binder", "GET", "binder", path="nb.ipynb")
    build = {"kind": "build", "path": "nb.ipynb", "options": {"base_image": image}}
    started = await record("build-started", "POST", "operations", body=build)
    await wait_op(record.jp_fetch, started["id"], TERMINAL, 600)
    await record("build-succeeded", "GET", "operations", started["id"])
    run = {"kind": "run", "path": "nb.ipynb", "options": {"base_image": image}}
    ran = await record("run-started", "POST", "operations", body=run)
    await wait_op(record.jp_fetch, ran["id"], TERMINAL, 600)
    await record("run-succeeded", "GET", "operations", ran["id"])
    await record("run-events", "GET", "operations", ran["id"], "events")
    await record("run-events-json", "GET", "operations", ran["id"], "events", format="json")
    await record("operations", "GET", "operations")
    await record("cancel-finished", "DELETE", "operations", ran["id"])
    await record("not-found", "GET", "operations", "0" * 32)
    await record("bad-request", "POST", "operations", body={"kind": "build", "path": 3})


@pytest.mark.timeout(1200)
async def test_the_jest_recordings_match_the_real_server(
    jp_fetch: Any, jp_root_dir: Path, test_base_image: str, op_cleanup: list[str]
) -> None:
    write_notebook(jp_root_dir / "nb.ipynb", [("import json\nprint(json.dumps([1]))", "[1]\n")])
    record = Recorder(jp_fetch, jp_root_dir)
    await record_a_session(record, test_base_image)
    for answer in record.answers.values():
        body = answer["body"]
        if isinstance(body, dict) and isinstance(body.get("id"), str):
            op_cleanup.append(body["id"])
    assert record.answers["build-succeeded"]["body"]["state"] == "succeeded"
    assert record.answers["run-succeeded"]["body"]["state"] == "succeeded"
    assert record.answers["not-found"]["status"] == 404
    assert record.answers["bad-request"]["status"] == 400
    if os.environ.get("ENVPACK_RECORD") == "1":
        RECORDED.mkdir(parents=True, exist_ok=True)
        for name, answer in record.answers.items():
            text = json.dumps(answer, indent=1, sort_keys=True) + "\n"
            (RECORDED / f"{name}.json").write_text(text, encoding="utf-8")
    stale = {}
    for name, answer in record.answers.items():
        path = RECORDED / f"{name}.json"
        assert path.is_file(), f"no recording {path.name}: run with ENVPACK_RECORD=1"
        old = json.loads(path.read_text(encoding="utf-8"))
        found = [f"status {old['status']} became {answer['status']}"] * (
            old["status"] != answer["status"]
        )
        found += differences(shape(old["body"]), shape(answer["body"]))
        if found:
            stale[name] = found
    assert not stale, f"stale jest recordings (rerun with ENVPACK_RECORD=1): {stale}"


def test_a_changed_answer_is_found_stale() -> None:
    old = {"id": "x", "state": "running", "result": None, "events": [{"seq": 1}]}
    assert differences(shape(old), shape({**old, "result": {"image": "i"}})) == []
    assert differences(shape(old), shape({**old, "state": 1})) == ["$.state: string became number"]
    renamed = {k: v for k, v in old.items() if k != "state"} | {"status": "running"}
    assert differences(shape(old), shape(renamed)) == [
        "$.state: only recorded",
        "$.status: new in the server",
    ]
    assert differences(shape(old), shape({**old, "events": [{"seq": "1"}]})) == [
        "$.events[].seq: number became string"
    ]
