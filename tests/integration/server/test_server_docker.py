"""Real builds and runs through the REST API (in-process server, real core, real engine):
build → cached rebuild → run with a report, the event stream, attach, cancel (RELIABILITY F6,
F7, J6)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest

pytest_plugins = ["pytest_jupyter.jupyter_server"]
pytestmark = pytest.mark.docker

OP_LABEL = "org.jupyter.envpack.operation"
TERMINAL = {"succeeded", "failed", "cancelled", "lost"}


def write_notebook(path: Path, cells: list[tuple[str, str | None]]) -> None:
    """Cells as (source, stdout seen when the user ran it, or None)."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "p", "language": "python"}
    for i, (source, stdout) in enumerate(cells):
        cell = nbformat.v4.new_code_cell(source)
        if source.startswith("# parameters"):
            cell.metadata["tags"] = ["parameters"]
        if stdout is not None:
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stdout)]
            cell.execution_count = i + 1
        nb.cells.append(cell)
    nbformat.write(nb, path)


async def submit(jp_fetch: Any, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    r = await jp_fetch(
        "envpack", "operations", method="POST", body=json.dumps(body), raise_error=False
    )
    return r.code, json.loads(r.body)


async def wait_op(jp_fetch: Any, op_id: str, states: set[str], timeout: float) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while True:
        op = json.loads((await jp_fetch("envpack", "operations", op_id)).body)
        if op["state"] in states:
            return op
        assert time.monotonic() < end, f"stuck in {op['state']}: {op['message']}"
        await asyncio.sleep(0.5)


@pytest.mark.timeout(900)
async def test_build_then_run_through_the_api(
    jp_fetch: Any,
    jp_root_dir: Path,
    test_base_image: str,
    docker_client: Any,
    op_cleanup: list[str],
) -> None:
    # Given a notebook that needs PyYAML, with the outputs its user saw
    write_notebook(
        jp_root_dir / "yamlnb.ipynb",
        [
            ("import yaml\nprint(yaml.safe_dump({'a': 1}), end='')", "a: 1\n"),
            ("# parameters\nn = 2", None),
            ("print(n * 21)", "42\n"),
        ],
    )
    options = {"base_image": test_base_image}
    # When it is built through the API
    code, op = await submit(jp_fetch, {"kind": "build", "path": "yamlnb.ipynb", "options": options})
    assert code == 202
    op_cleanup.append(op["id"])
    # (identical requests meanwhile attach to it)
    twins = await asyncio.gather(
        *[
            submit(jp_fetch, {"kind": "build", "path": "yamlnb.ipynb", "options": options})
            for _ in range(5)
        ]
    )
    assert {t[1]["id"] for t in twins} == {op["id"]} and {t[0] for t in twins} == {200}
    # the IOLoop stays responsive while the build runs in the pool (J6)
    started = time.monotonic()
    await jp_fetch("envpack", "operations")
    assert time.monotonic() - started < 1.0
    built = await wait_op(jp_fetch, op["id"], TERMINAL, 600)
    # Then it succeeded with a content-addressed image carrying the operation label
    assert built["state"] == "succeeded", built["error"]
    image = built["result"]["image"]
    assert image.startswith("envpack/") and built["handle"]["image"] == image
    if not built["result"]["cached"]:
        assert docker_client.images.get(image).labels[OP_LABEL] == op["id"]
    # a second build is a new operation that finds the image in the cache
    code, again = await submit(
        jp_fetch, {"kind": "build", "path": "yamlnb.ipynb", "options": options}
    )
    assert code == 202 and again["id"] != op["id"]
    again = await wait_op(jp_fetch, again["id"], TERMINAL, 120)
    assert again["result"]["cached"] is True and again["result"]["image"] == image
    # When it runs with a parameter
    code, run = await submit(
        jp_fetch,
        {
            "kind": "run",
            "path": "yamlnb.ipynb",
            "options": {**options, "parameters": {"n": 5}, "output": "out.ipynb"},
        },
    )
    assert code == 202
    op_cleanup.append(run["id"])
    run = await wait_op(jp_fetch, run["id"], TERMINAL, 600)
    # Then the report says which cells reproduced, the output is in the root, no path leaks
    assert run["state"] == "succeeded", run["error"]
    result = run["result"]
    assert result["image"] == image and result["output_path"] == "out.ipynb"
    assert [c["status"] for c in result["report"]["cells"]] == ["same", "skipped", "differs"]
    assert result["report"]["output_path"] == "out.ipynb"
    assert str(jp_root_dir) not in json.dumps(run)
    executed = nbformat.read(jp_root_dir / "out.ipynb", as_version=4)
    assert executed.cells[-1].outputs[0]["text"] == "105\n"
    assert (
        docker_client.containers.list(all=True, filters={"label": f"{OP_LABEL}={run['id']}"}) == []
    )
    # and its event stream tells the story, with no server path in it
    r = await jp_fetch("envpack", "operations", run["id"], "events", params={"format": "json"})
    page = json.loads(r.body)
    stages = {e.get("stage") for e in page["events"]}
    assert {"snapshot", "run"} <= stages and page["done"] is True
    assert str(jp_root_dir) not in r.body.decode()


@pytest.mark.reliability("F6")
@pytest.mark.timeout(900)
async def test_cancelling_a_run_stops_its_container(
    jp_fetch: Any,
    jp_root_dir: Path,
    test_base_image: str,
    docker_client: Any,
    op_cleanup: list[str],
) -> None:
    write_notebook(jp_root_dir / "sleepy.ipynb", [("import time\ntime.sleep(120)", None)])
    code, op = await submit(
        jp_fetch,
        {"kind": "run", "path": "sleepy.ipynb", "options": {"base_image": test_base_image}},
    )
    assert code == 202
    op_cleanup.append(op["id"])
    end = time.monotonic() + 600
    while not docker_client.containers.list(filters={"label": f"{OP_LABEL}={op['id']}"}):
        assert time.monotonic() < end, "the run never started"
        await asyncio.sleep(0.5)
    r = await jp_fetch("envpack", "operations", op["id"], method="DELETE")
    assert r.code == 202
    cancelled = await wait_op(jp_fetch, op["id"], TERMINAL, 30)
    assert cancelled["state"] == "cancelled"
    end = time.monotonic() + 10
    while docker_client.containers.list(all=True, filters={"label": f"{OP_LABEL}={op['id']}"}):
        assert time.monotonic() < end, "container still there 10 s after the cancel"
        await asyncio.sleep(0.5)
    r = await jp_fetch("envpack", "operations", op["id"], method="DELETE")
    assert r.code == 200  # idempotent


@pytest.mark.reliability("F8")
@pytest.mark.timeout(900)
async def test_at_most_two_runs_at_once_the_rest_queued(
    jp_fetch: Any,
    jp_root_dir: Path,
    test_base_image: str,
    docker_client: Any,
    op_cleanup: list[str],
) -> None:
    write_notebook(jp_root_dir / "nap.ipynb", [("import time\ntime.sleep(6)", None)])
    ids = []
    for i in range(3):  # different outputs: three operations, not one attached
        code, op = await submit(
            jp_fetch,
            {
                "kind": "run",
                "path": "nap.ipynb",
                "options": {"base_image": test_base_image, "output": f"nap{i}.ipynb"},
            },
        )
        assert code == 202
        ids.append(op["id"])
        op_cleanup.append(op["id"])
    most, saw_queued_while_two_ran = 0, False
    end = time.monotonic() + 600
    while True:
        running = [
            c
            for op_id in ids
            for c in docker_client.containers.list(  # sparse: no inspect of a container
                filters={"label": f"{OP_LABEL}={op_id}", "status": "running"}, sparse=True
            )  # that is removed meanwhile (a 404 race of docker-py's list)
        ]
        most = max(most, len(running))
        states = [
            json.loads((await jp_fetch("envpack", "operations", i)).body)["state"] for i in ids
        ]
        saw_queued_while_two_ran |= len(running) == 2 and "queued" in states
        if all(s in TERMINAL for s in states):
            break
        assert time.monotonic() < end, states
        await asyncio.sleep(0.3)
    errors = [
        json.loads((await jp_fetch("envpack", "operations", i)).body).get("error") for i in ids
    ]
    assert states == ["succeeded"] * 3, errors
    assert most <= 2 and saw_queued_while_two_ran
    assert all((jp_root_dir / f"nap{i}.ipynb").exists() for i in range(3))
