"""J1: the Jupyter server is killed (SIGTERM, SIGKILL) while a run is active; after a restart the
operation converges to what Docker says — followed to the end, cancelled, or lost — never stuck
``running``, never run twice. A real ``jupyter server`` subprocess and the real engine."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest

from jupyter_envpack.image import BuildOptions, build_image
from jupyter_envpack.snapshot import take_snapshot

pytestmark = [pytest.mark.docker, pytest.mark.slow]

OP_LABEL = "org.jupyter.envpack.operation"
SLEEP = 25


@pytest.fixture(scope="module")
def slow_image(docker_client: Any, test_base_image: str, tmp_path_factory: Any) -> str:
    """The image of a stdlib-only notebook (built once; the run op skips its build)."""
    folder = tmp_path_factory.mktemp("slowimg")
    path = folder / "slow.ipynb"
    write_slow_notebook(path)
    spec = take_snapshot(path)
    return build_image(
        spec, path, BuildOptions(base_image=test_base_image), client=docker_client
    ).image


def write_slow_notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "p", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(f"import time\ntime.sleep({SLEEP})"),
        nbformat.v4.new_code_cell("print(6 * 7)"),
    ]
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="42\n")]
    nb.cells[1].execution_count = 2
    nbformat.write(nb, path)


def containers(docker_client: Any, op_id: str) -> list[Any]:
    return docker_client.containers.list(all=True, filters={"label": f"{OP_LABEL}={op_id}"})


def start_slow_run(server: Any, docker_client: Any, image: str, op_cleanup: list[str]) -> str:
    write_slow_notebook(server.root / "slow.ipynb")
    code, op = server.request(
        "POST",
        "envpack/operations",
        {"kind": "run", "path": "slow.ipynb", "options": {"image": image}},
    )
    assert code == 202, op
    op_cleanup.append(op["id"])
    server.wait_op(op["id"], {"running"}, 30)
    end = time.monotonic() + 60
    while not [c for c in containers(docker_client, op["id"]) if c.status == "running"]:
        assert time.monotonic() < end, "the run container never started"
        time.sleep(0.3)
    return op["id"]


@pytest.mark.reliability("J1")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["TERM", "KILL"])
def test_a_killed_server_follows_the_run_again(
    server_process: Any, docker_client: Any, slow_image: str, op_cleanup: list[str], sig: int
) -> None:
    # Given a run in progress
    server_process.start()
    op_id = start_slow_run(server_process, docker_client, slow_image, op_cleanup)
    # When the server dies
    server_process.kill(sig)
    assert [c.status for c in containers(docker_client, op_id)] == ["running"]  # work goes on
    # Then, restarted on the same database, it follows the container to its end
    server_process.start()
    op = server_process.wait_op(op_id, {"succeeded", "failed", "lost", "cancelled"}, SLEEP + 90)
    assert op["state"] == "succeeded", op
    assert op["attempt"] == 1  # not run twice
    result = op["result"]
    assert result["resumed"] is True and result["exit_code"] == 0
    assert result["output_path"] == "slow.envpack.ipynb"
    assert result["report"]["cells"][1]["status"] == "same"  # cell 0 had no stored output
    executed = nbformat.read(server_process.root / "slow.envpack.ipynb", as_version=4)
    assert executed.cells[1].outputs[0]["text"] == "42\n"
    assert containers(docker_client, op_id) == []  # collected and removed


@pytest.mark.reliability("J1", "F6")
def test_cancel_works_after_a_restart(
    server_process: Any, docker_client: Any, slow_image: str, op_cleanup: list[str]
) -> None:
    server_process.start()
    op_id = start_slow_run(server_process, docker_client, slow_image, op_cleanup)
    server_process.kill(signal.SIGKILL)
    server_process.start()
    code, op = server_process.request("DELETE", f"envpack/operations/{op_id}")
    assert code == 202, op
    op = server_process.wait_op(op_id, {"cancelled", "succeeded", "failed", "lost"}, 30)
    assert op["state"] == "cancelled"
    end = time.monotonic() + 15
    while containers(docker_client, op_id):
        assert time.monotonic() < end, "the cancelled run's container is still there"
        time.sleep(0.5)
    assert server_process.request("DELETE", f"envpack/operations/{op_id}")[0] == 200


@pytest.mark.reliability("J1")
def test_a_vanished_container_is_marked_lost(
    server_process: Any, docker_client: Any, slow_image: str, op_cleanup: list[str]
) -> None:
    server_process.start()
    op_id = start_slow_run(server_process, docker_client, slow_image, op_cleanup)
    server_process.kill(signal.SIGKILL)
    for c in containers(docker_client, op_id):
        c.remove(force=True, v=True)
    server_process.start()
    op = server_process.wait_op(op_id, {"lost", "succeeded", "failed", "cancelled"}, 30)
    assert op["state"] == "lost" and op["error"]["reason"] == "lost"
    assert server_process.request("DELETE", f"envpack/operations/{op_id}")[0] == 409
