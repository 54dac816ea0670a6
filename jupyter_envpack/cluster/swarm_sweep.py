"""A sweep as one Swarm ``replicated-job`` with N tasks (``concurrency`` = the parallel cap).

Every task gets all rows (``ENVPACK_SWEEP_ROWS``, JSON) and its slot (``{{.Task.Slot}}``); a
few lines of Python run by the image's runner interpreter put row ``slot`` into
``ENVPACK_PARAMETERS_CELL`` and ``exec`` the runner, so images need nothing new. Swarm numbers a
replicated job's tasks 0..N-1 but renders slot 0 in templates as the node id (measured on Docker
20.10): a slot that is not a number is 0. Each task's log (``/tasks/{id}/logs``) carries its
executed notebook. Swarm retries a failed task of a job whatever the restart policy, which would
run a failed member again and again (and hold its concurrency slot): the picker runs the runner
as a child, prints its exit code as ``{"envpack": "exit", "code": N}`` and exits 0, and the
member's status is read from that line.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from ..contract import PARAMETERS_ENV, RUNNER_PYTHON
from ..execute.sweep import SweepRun, collect_runs, wait_members
from ..image.dockerapi import task_logs
from .base import (
    JobSpec,
    JobState,
    JobStatus,
    status_from_exit_code,
)
from .swarm import SwarmBackend, make_service_spec

ROWS_ENV = "ENVPACK_SWEEP_ROWS"
INDEX_ENV = "ENVPACK_SWEEP_INDEX"
PICK = (
    "import json, os, sys\n"
    f"rows = json.loads(os.environ.pop({ROWS_ENV!r}))\n"
    f"slot = os.environ.pop({INDEX_ENV!r}, '0')\n"
    f"os.environ[{PARAMETERS_ENV!r}] = rows[int(slot) if slot.isdigit() else 0]\n"
    "import subprocess\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print(json.dumps({'envpack': 'exit', 'code': code}), flush=True)\n"
)


def make_sweep_service_spec(spec: JobSpec, cells: list[str], max_parallel: int) -> dict[str, Any]:
    """The service body of a sweep: :func:`make_service_spec` with N tasks and a row picker."""
    body = make_service_spec(spec)
    container = body["TaskTemplate"]["ContainerSpec"]
    container["Env"] = [
        *container.get("Env", []),
        f"{ROWS_ENV}={json.dumps(cells)}",
        f"{INDEX_ENV}={{{{.Task.Slot}}}}",
    ]
    container["Command"] = [RUNNER_PYTHON, "-c", PICK, *container["Command"]]
    body["Mode"] = {
        "ReplicatedJob": {"MaxConcurrent": max(1, max_parallel), "TotalCompletions": len(cells)}
    }
    return body


def submit_sweep(backend: SwarmBackend, spec: JobSpec, cells: list[str], max_parallel: int) -> str:
    """Create the sweep's service; return its id."""
    backend.check_swarm()
    body = make_sweep_service_spec(spec, cells, max_parallel)
    created = backend.client.api.create_service(
        body["TaskTemplate"], name=body["Name"], labels=body["Labels"], mode=body["Mode"]
    )
    return str(created["ID"])


def _slot(task: dict[str, Any]) -> int:
    return int(task.get("Slot") or 0)


def _task_log(backend: SwarmBackend, task_id: str, tail: str = "all") -> str:
    return task_logs(backend.client.api, task_id, tail).decode("utf-8", errors="replace")


def follow_swarm_sweep(
    backend: SwarmBackend,
    handle: str,
    rows: list[dict[str, Any]],
    *,
    folder: Path,
    stem: str,
    timeout: float,
    poll: float = 2.0,
    reporter: Any = None,
) -> list[SweepRun]:
    """Wait for every task of the sweep service, fetch each notebook, return the runs."""
    tasks: dict[int, dict[str, Any]] = {}

    def read() -> dict[int, Any]:
        tasks.clear()
        found = backend.client.api.tasks(filters={"service": handle})
        tasks.update({_slot(t): t for t in sorted(found, key=lambda t: t.get("CreatedAt", ""))})
        return {i: backend._task_status(t) for i, t in tasks.items()}

    states = wait_members(read, len(rows), timeout, poll, reporter)
    logs = {i: _task_log(backend, tasks[i]["ID"]) for i in range(len(rows))}
    states = {i: member_status(states[i], logs[i]) for i in range(len(rows))}
    return collect_runs(rows, states, logs.__getitem__, folder=folder, stem=stem)


def member_status(status: JobStatus, log: str) -> JobStatus:
    """The runner's own outcome, from the picker's exit line, for a task Swarm saw complete."""
    if status.state is not JobState.SUCCEEDED:
        return status
    for line in reversed(log.splitlines()):
        if line.startswith('{"envpack": "exit"'):
            with contextlib.suppress(ValueError, TypeError):
                return status_from_exit_code(int(json.loads(line)["code"]), status.node)
    return status
