"""A parameter sweep started through the REST API (issue 14): ``run`` with ``sweep`` and
``max_parallel`` runs every row in the real engine and returns one row per member."""

from __future__ import annotations

import asyncio
import csv
import json
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from test_server_docker import OP_LABEL, TERMINAL, submit, wait_op

pytest_plugins = ["pytest_jupyter.jupyter_server"]
pytestmark = pytest.mark.docker


def _sweep_notebook(path: Path) -> None:
    params = nbformat.v4.new_code_cell("seed = 0")
    params.metadata["tags"] = ["parameters"]
    params.execution_count = 1
    work = nbformat.v4.new_code_cell("print(seed * 10)")
    work.execution_count = 2
    work.outputs = [nbformat.v4.new_output("stream", name="stdout", text="0\n")]
    nb = nbformat.v4.new_notebook(cells=[params, work])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "p"}
    nbformat.write(nb, path)


@pytest.mark.timeout(900)
async def test_a_two_member_sweep_through_the_api(
    jp_fetch: Any, jp_root_dir: Path, shared_image: tuple[str, Path], op_cleanup: list[str]
) -> None:
    # Given a tiny notebook whose output depends on its parameter
    (jp_root_dir / "sub").mkdir()
    _sweep_notebook(jp_root_dir / "sub" / "tiny.ipynb")
    options = {"image": shared_image[0], "sweep": {"seed": "0..1"}, "max_parallel": 2}
    # When a sweep of two members is started through the API
    code, op = await submit(jp_fetch, {"kind": "run", "path": "sub/tiny.ipynb", "options": options})
    assert code == 202, op
    op_cleanup.append(op["id"])
    done = await wait_op(jp_fetch, op["id"], {"succeeded", "failed"}, 600)
    # Then each member ran with its row, reported its verdict and kept its executed notebook
    assert done["state"] == "succeeded", done
    sweep = done["result"]["sweep"]
    assert sweep["folder"] == "sub/tiny.sweep"
    runs = sweep["runs"]
    assert [r["parameters"] for r in runs] == [{"seed": 0}, {"seed": 1}]
    assert [r["verdict"] for r in runs] == ["reproduced", "not-reproduced"]
    for run in runs:
        assert run["state"] == "succeeded" and run["output_path"].startswith("sub/tiny.sweep/")
        executed = nbformat.read(jp_root_dir / run["output_path"], as_version=4)
        printed = executed.cells[-1].outputs[0]["text"]
        assert printed == f"{run['parameters']['seed'] * 10}\n"
    with (jp_root_dir / sweep["summary_csv"]).open() as handle:
        assert [r["seed"] for r in csv.DictReader(handle)] == ["0", "1"]


@pytest.mark.timeout(600)
async def test_cancelling_a_sweep_stops_every_member(
    jp_fetch: Any,
    jp_root_dir: Path,
    shared_image: tuple[str, Path],
    docker_client: Any,
    op_cleanup: list[str],
) -> None:
    # Given a sweep of three sleeping members, two at once
    params = nbformat.v4.new_code_cell("seed = 0")
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(
        cells=[params, nbformat.v4.new_code_cell("import time\ntime.sleep(120)")]
    )
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "p"}
    nbformat.write(nb, jp_root_dir / "slow.ipynb")
    options = {"image": shared_image[0], "sweep": {"seed": "1..3"}, "max_parallel": 2}
    code, op = await submit(jp_fetch, {"kind": "run", "path": "slow.ipynb", "options": options})
    assert code == 202, op
    op_cleanup.append(op["id"])
    label = {"label": f"{OP_LABEL}={op['id']}"}
    end = time.monotonic() + 300
    while len(docker_client.containers.list(filters=label)) < 2:
        assert time.monotonic() < end, "the two first members never started"
        await asyncio.sleep(0.5)
    # When it is cancelled
    r = await jp_fetch("envpack", "operations", op["id"], method="DELETE")
    assert r.code == 202
    # Then the operation ends cancelled, its containers are gone, the third member never started
    done = await wait_op(jp_fetch, op["id"], TERMINAL, 60)
    assert done["state"] == "cancelled", done
    end = time.monotonic() + 15
    while docker_client.containers.list(all=True, filters=label):
        assert time.monotonic() < end, "member containers still there 15 s after the cancel"
        await asyncio.sleep(0.5)
    assert not list((jp_root_dir / "slow.sweep").glob("*.ipynb"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sweep": {"seed": "3..1"}}, "range must go up"),
        ({"sweep": {"1x": "1,2"}}, "sweep"),
        ({"sweep": {"seed": "1,2"}, "engine": "venv"}, "cannot be combined"),
        ({"sweep": {"seed": "1,2"}, "max_parallel": 99}, "max_parallel"),
    ],
)
async def test_a_bad_sweep_is_refused_before_anything_runs(
    jp_fetch: Any, jp_root_dir: Path, options: dict[str, Any], message: str
) -> None:
    _sweep_notebook(jp_root_dir / "tiny.ipynb")
    code, body = await submit(jp_fetch, {"kind": "run", "path": "tiny.ipynb", "options": options})
    assert code == 400, body
    assert message in json.dumps(body)
    assert not (jp_root_dir / "tiny.sweep").exists()
