"""A hostile notebook rerun in a real container (RELIABILITY L1, L4, L6): planted links beside it,
cells that allocate, fork, write outside their folder or flood the log, and a container that
leaves a huge result. The host must stay responsive and the report must name the cause."""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_envpack.errors import InputError, ResultTooLargeError
from jupyter_envpack.events import ProgressEvent
from jupyter_envpack.execute import RunOptions, run_notebook
from jupyter_envpack.execute.limits import RunLimits
from jupyter_envpack.execute.run import collect_run

pytestmark = pytest.mark.docker


class Latency:
    """Measures the host's scheduling delay every 50 ms while a test runs."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            time.sleep(0.05)
            self.worst = max(self.worst, time.monotonic() - started - 0.05)

    def __enter__(self) -> Latency:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.reliability("L1")
def test_planted_links_beside_the_notebook_are_never_written_through(
    shared_image, make_notebook, test_labels, canary: Path, untouched
) -> None:
    image, _ = shared_image
    path = make_notebook([("print(6 * 7)", [])], folder=canary.parent.parent / "repo")
    part = path.with_name("nb.envpack.ipynb.part")
    part.symlink_to(canary)
    result = run_notebook(image, path, RunOptions(labels=test_labels))
    assert untouched(canary, part)
    assert not result.output_path.is_symlink() and '"42' in result.output_path.read_text()
    result.output_path.unlink()
    result.output_path.symlink_to(canary)
    with pytest.raises(InputError, match="symbolic link"):
        run_notebook(image, path, RunOptions(labels=test_labels))
    assert untouched(canary, result.output_path)


@pytest.mark.reliability("L4")
def test_a_cell_that_allocates_without_end_is_out_of_memory(
    shared_image, make_notebook, test_labels
) -> None:
    image, _ = shared_image
    path = make_notebook([("x = 1", []), ("b = bytearray(50 * 2**30)", []), ("print(x)", [])])
    with Latency() as latency:
        result = run_notebook(
            image, path, RunOptions(labels=test_labels, limits=RunLimits(memory="256m"))
        )
    assert result.report.run_status == "out-of-memory", result.report.to_json()
    assert result.report.to_json()["limits"]["memory"] == 256 * 2**20
    assert latency.worst < 2.0


@pytest.mark.reliability("L4")
def test_a_fork_loop_stops_at_the_pids_limit(shared_image, make_notebook, test_labels) -> None:
    image, _ = shared_image
    fork_loop = (
        "import os, time\n"
        "children = []\n"
        "try:\n"
        "    while len(children) < 100000:\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            time.sleep(120)\n"
        "            os._exit(0)\n"
        "        children.append(pid)\n"
        "finally:\n"
        "    print('forked', len(children))\n"
        "    for pid in children:\n"
        "        os.kill(pid, 9)\n"
    )
    path = make_notebook([(fork_loop, [])])
    with Latency() as latency:
        result = run_notebook(image, path, RunOptions(labels=test_labels, cell_timeout=120))
    assert result.report.run_status == "pids-limit", result.report.to_json()
    executed = result.output_path.read_text()
    forked = int(executed.split("forked ")[1].split("\\n")[0])
    assert 10 < forked < RunLimits().pids
    assert latency.worst < 2.0


@pytest.mark.reliability("L4")
def test_the_root_filesystem_is_read_only_but_work_and_tmp_are_writable(
    shared_image, make_notebook, test_labels
) -> None:
    image, _ = shared_image
    path = make_notebook(  # never run before: the cause is read from the executed notebook
        [
            "open('out.txt', 'w').write('ok'); open('/tmp/t', 'w').write('ok'); print('wrote')",
            "open('/opt/x', 'w')",
        ]
    )
    result = run_notebook(image, path, RunOptions(labels=test_labels))
    assert result.report.run_status == "read-only", result.report.to_json()
    executed = result.output_path.read_text()
    assert "wrote" in executed and "Read-only file system: '/opt/x'" in executed
    assert result.report.to_json()["limits"]["read_only_root"] is True


@pytest.mark.reliability("L6")
def test_a_million_envpack_lines_and_a_flood_of_log_stay_bounded(
    shared_image, make_notebook, test_labels
) -> None:
    image, _ = shared_image
    flood = (
        "import os\n"
        "fd = os.open('/proc/1/fd/2', os.O_WRONLY)\n"  # the container's stderr, not the cell's
        'line = b\'{"envpack": "error", "message": "spam"}\\n\'\n'
        "for _ in range(100):\n"
        "    os.write(fd, line * 10000)\n"  # a million container-emitted warnings
        "junk = b'x' * (2**20 - 1) + b'\\n'\n"
        "for _ in range(1024):\n"
        "    os.write(fd, junk)\n"  # 1 GiB of log
        "print('done')"
    )
    path = make_notebook([(flood, [])])
    events: list[ProgressEvent] = []
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = run_notebook(
        image, path, RunOptions(labels=test_labels, cell_timeout=300), reporter=events.append
    )
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    warnings = [e for e in events if e.kind == "warning"]
    assert result.report.run_status == "completed"
    assert 1000 <= len(warnings) <= 1001 and "too many events" in warnings[-1].message
    assert sum(len(e.message) for e in events) < 80 * 2**20
    assert grown_mib < 200


@pytest.fixture
def exited(docker_client: Any, shared_image, test_labels) -> Iterator[Any]:
    """A run-like container (read-only root, home volume) that left a 300 GB sparse file where
    the executed notebook goes."""
    image, _ = shared_image
    limits = RunLimits()
    container = docker_client.containers.create(
        image,
        command=[
            "sh",
            "-c",
            "mkdir -p ~/.envpack-output && truncate -s 300G ~/.envpack-output/executed.ipynb",
        ],
        user="1000:1000",
        labels={"org.jupyter.envpack": "1", **test_labels},
        **limits.host_config(),
    )
    container.start()
    container.wait(timeout=60)
    yield container
    container.remove(force=True, v=True)


@pytest.mark.reliability("L6")
def test_a_huge_result_file_is_refused_without_reading_it(
    exited: Any, make_notebook, tmp_path: Path
) -> None:
    path = make_notebook([("1", [])])
    started = time.monotonic()
    with pytest.raises(ResultTooLargeError, match="larger than 200 MiB") as info:
        collect_run(exited, path, 0)
    assert info.value.status == 413 and info.value.hint
    assert time.monotonic() - started < 10
    assert not path.with_name("nb.envpack.ipynb").exists()
