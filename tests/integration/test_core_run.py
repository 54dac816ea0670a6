"""Rerunning notebooks in a real image: reports, failures, limits (RELIABILITY H1-H4, H9, E6, C7)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest

from jupyter_envpack.errors import RunError
from jupyter_envpack.execute import RunOptions, run_notebook

pytestmark = pytest.mark.docker


def executed_locally(make_notebook, cells: list[str], name: str = "nb.ipynb") -> Path:
    """A notebook whose stored outputs come from running it here (like a user's notebook)."""
    from nbclient import NotebookClient

    path = make_notebook(cells, name=name)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, kernel_name="python3", allow_errors=True).execute()
    nbformat.write(nb, path)
    return path


def test_a_notebook_reproduces_and_comes_back(
    shared_image, make_notebook, test_labels, own_containers
) -> None:
    image, _ = shared_image
    path = executed_locally(
        make_notebook,
        [
            "import yaml\nprint(yaml.safe_dump({'a': [1, 2]}))",
            "# parameters\nn = 2",
            "n * 21",
            "import time\nprint(time.time())",
        ],
    )
    result = run_notebook(image, path, RunOptions(labels=test_labels))
    statuses = [c.status for c in result.report.cells]
    assert statuses == ["same", "same", "same", "differs"]
    assert result.output_path == path.with_name("nb.envpack.ipynb")
    executed = nbformat.read(result.output_path, as_version=4)
    assert executed.cells[2].outputs[0]["data"]["text/plain"] == "42"
    assert own_containers() == []
    # The copy keeps the notebook's kernel metadata (JupyterLab opens it unmodified, issue 12.4)
    original = nbformat.read(path, as_version=4).metadata
    assert executed.metadata.kernelspec == original.kernelspec
    assert executed.metadata.language_info == original.language_info
    assert executed.metadata.envpack.language_info.version.startswith("3.")


def test_parameters_reach_the_tagged_cell(shared_image, make_notebook, test_labels) -> None:
    image, _ = shared_image
    path = executed_locally(make_notebook, ["# parameters\nn = 2", "print(n * 21)"])
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nb, path)
    result = run_notebook(image, path, RunOptions(parameters={"n": 5}, labels=test_labels))
    assert [c.status for c in result.report.cells] == ["same", "differs"]
    assert "+[stdout] 105" in (result.report.cells[1].diff or "")


@pytest.mark.reliability("H7")
def test_an_untagged_parameters_cell_that_wins_is_reported(
    shared_image, make_notebook, test_labels
) -> None:
    """Issue 12.1: papermill's contract (inject first) and a warning naming the cell that wins."""
    image, _ = shared_image
    path = executed_locally(make_notebook, ["import yaml", "# parameters\nn = 2", "print(n * 21)"])
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(1, nbformat.v4.new_markdown_cell("## Parameters"))  # also counted (12.4)
    nbformat.write(nb, path)
    events: list[Any] = []
    result = run_notebook(
        image, path, RunOptions(parameters={"n": 5}, labels=test_labels), reporter=events.append
    )
    report = result.report.to_json()
    executed = nbformat.read(result.output_path, as_version=4)
    assert "injected-parameters" in executed.cells[0].metadata["tags"]
    assert executed.cells[4].outputs[0]["text"] == "42\n"  # the notebook's own n won
    assert report["parameters"] == {"n": 5}
    [warning] = report["warnings"]
    assert warning["code"] == "parameters-overridden" and warning["cell"] == 2
    assert warning["message"].startswith("cell 3 assigns n") and "tag cell 3" in warning["hint"]
    # Issue 12.4: progress names code cells 1..4 (3 + the injected one), never "cell 5/4"
    cells = [e.message for e in events if e.kind == "progress" and e.message.startswith("cell ")]
    assert cells[-1] == "cell 4/4" and all(int(c[5:].split("/")[0]) <= 4 for c in cells)


def test_cli_run_nothing_to_compare_has_its_own_exit_code(shared_image, make_notebook) -> None:
    """Issue 12.2: never-executed cells are ``skipped``; that is no proof of reproduction."""
    image, _ = shared_image
    path = make_notebook(["print(6 * 7)", "import yaml"])
    argv = [sys.executable, "-m", "jupyter_envpack.cli", "run", str(path), "--image", image]
    proc = subprocess.run([*argv, "--json", "-q"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr
    report = json.loads(proc.stdout)
    assert report["verdict"] == "nothing-to-compare" and report["reproduced"] is False
    assert report["summary"] == {"skipped": 2}
    text = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert text.returncode == 3 and "nothing to compare" in text.stdout


@pytest.mark.reliability("H1")
def test_a_raising_notebook_is_a_new_error_and_is_saved(
    shared_image, make_notebook, test_labels
) -> None:
    image, _ = shared_image
    path = executed_locally(make_notebook, ["x = 1", "print(x)"])
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].source = "raise ValueError('boom')"
    nbformat.write(nb, path)
    result = run_notebook(image, path, RunOptions(labels=test_labels))
    cell = result.report.cells[1]
    assert (cell.status, cell.ename, cell.evalue) == ("new-error", "ValueError", "boom")
    assert result.exit_code == 3 and result.report.run_status == "cell-error"
    assert result.output_path.exists()


@pytest.mark.reliability("C7")
def test_an_unresolved_import_fails_with_the_module_named(
    shared_image, make_notebook, test_labels
) -> None:
    image, _ = shared_image
    path = executed_locally(
        make_notebook, ["import importlib\nm = importlib.import_module('envpack_no_such_mod')"]
    )
    result = run_notebook(image, path, RunOptions(labels=test_labels))
    cell = result.report.cells[0]
    # it failed locally too, the same way: reproduced as an error
    assert cell.status == "error" and cell.ename == "ModuleNotFoundError"
    assert "envpack_no_such_mod" in (cell.evalue or "")


@pytest.mark.reliability("H2")
def test_a_hanging_cell_times_out(shared_image, make_notebook, test_labels) -> None:
    image, _ = shared_image
    path = make_notebook([("x = 1", []), ("while True:\n    pass", [])])
    result = run_notebook(image, path, RunOptions(cell_timeout=3, labels=test_labels))
    assert result.report.run_status == "timeout" and result.exit_code == 4
    assert not result.report.reproduced


@pytest.mark.reliability("H2")
def test_the_overall_deadline_stops_and_removes_the_container(
    shared_image, make_notebook, test_labels, own_containers
) -> None:
    image, _ = shared_image
    path = make_notebook([("import time\ntime.sleep(120)", [])])
    started = time.monotonic()
    with pytest.raises(RunError) as info:
        run_notebook(image, path, RunOptions(deadline=8, labels=test_labels))
    assert info.value.reason == "deadline"
    assert time.monotonic() - started < 40
    assert own_containers() == []


@pytest.mark.reliability("H3")
def test_kernel_death_is_reported(shared_image, make_notebook, test_labels) -> None:
    image, _ = shared_image
    path = make_notebook([("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", [])])
    result = run_notebook(image, path, RunOptions(labels=test_labels, cell_timeout=60))
    assert result.report.run_status == "kernel-died" and result.exit_code == 5


@pytest.mark.reliability("H4", "L4")
def test_out_of_memory_names_the_limit(shared_image, make_notebook, test_labels) -> None:
    image, _ = shared_image
    path = make_notebook([("b = bytearray(1024 * 2**20)\nb[::4096] = b'x' * len(b[::4096])", [])])
    try:  # the kernel is killed (a report) or, at 96m, the runner with it (an error)
        result = run_notebook(image, path, RunOptions(mem_limit="96m", labels=test_labels))
    except RunError as exc:
        assert exc.reason == "out-of-memory" and "96m" in exc.message
    else:
        assert result.report.run_status == "out-of-memory" and not result.report.reproduced
        assert result.report.to_json()["limits"]["memory"] == 96 * 2**20


@pytest.mark.reliability("H9", "E6")
def test_container_is_locked_down_and_gets_no_server_secrets(
    docker_client, shared_image, make_notebook, test_labels, monkeypatch, own_containers
) -> None:
    canary = "CANARY-token-93"
    monkeypatch.setenv("JUPYTER_TOKEN", canary)
    image, _ = shared_image
    path = make_notebook([("import time, os\ntime.sleep(4)\nprint(sorted(os.environ))", [])])
    seen: dict[str, Any] = {}
    finished = threading.Event()

    def inspect() -> None:
        while not finished.is_set():  # a loaded machine may take long to create the container
            found = own_containers()
            if found:
                seen.update(docker_client.api.inspect_container(found[0].id))
                return
            time.sleep(0.1)

    t = threading.Thread(target=inspect)
    t.start()
    try:
        run_notebook(image, path, RunOptions(labels=test_labels, mem_limit="512m"))
    finally:
        finished.set()
        t.join()
    host = seen["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
    assert not host["Privileged"] and not host.get("Binds")
    assert [(m["Type"], m["Destination"], m["RW"]) for m in seen["Mounts"]] == [
        ("volume", "/home/envpack", True)  # anonymous, removed with the container
    ]
    assert host["ReadonlyRootfs"] and list(host["Tmpfs"]) == ["/tmp"]
    assert host["PidsLimit"] == 512 and host["Memory"] == host["MemorySwap"] == 512 * 2**20
    assert host["NanoCpus"] == 2 * 10**9
    assert seen["Config"]["User"] == "1000:1000"
    assert canary not in json.dumps(seen)
    assert seen["Config"]["Labels"]["org.jupyter.envpack.kind"] == "run"


def test_cli_run_contract(shared_image, make_notebook) -> None:
    image, _ = shared_image
    path = executed_locally(make_notebook, ["print(6 * 7)"])
    out = tmp_out = path.with_name("custom-out.ipynb")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter_envpack.cli",
            "run",
            str(path),
            "--image",
            image,
            "--json",
            "-q",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["schema"] == "envpack.report/1" and report["reproduced"] is True
    assert report["verdict"] == "reproduced" and report["parameters"] == {}
    assert report["cells"] == [{"index": 0, "status": "same"}]
    assert tmp_out.exists()
    bad = subprocess.run(
        [sys.executable, "-m", "jupyter_envpack.cli", "run", str(path), "--image", "Bad Ref"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "invalid image reference" in bad.stderr


@pytest.mark.reliability("H5")
@pytest.mark.parametrize("how", ["kill", "remove"])
def test_a_container_killed_from_outside_is_a_clear_failure(
    docker_client, shared_image, make_notebook, test_labels, own_containers, how: str
) -> None:
    image, _ = shared_image
    path = make_notebook([("import time\ntime.sleep(60)", [])])

    def attack() -> None:
        for _ in range(200):
            found = [c for c in own_containers() if c.status == "running"]
            if found:
                time.sleep(1)
                if how == "kill":
                    found[0].kill()
                else:
                    found[0].remove(force=True, v=True)
                return
            time.sleep(0.1)

    t = threading.Thread(target=attack)
    t.start()
    started = time.monotonic()
    with pytest.raises(RunError) as info:
        run_notebook(image, path, RunOptions(labels=test_labels))
    t.join()
    # `docker rm -f` kills first: whether the wait sees the exit or the removal is a race
    assert info.value.reason in ({"killed"} if how == "kill" else {"killed", "lost"})
    assert time.monotonic() - started < 45
    assert own_containers() == []
