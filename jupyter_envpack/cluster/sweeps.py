"""Sweeps in the job index: one record per sweep, its members' states read from any backend.

A sweep is indexed like a job (``jupyter envpack jobs`` / ``cancel ID``) with
``options["sweep"] = {"members": N, "max_parallel": M}``; its handle is the backend's one object
for the whole sweep (a Kubernetes Indexed Job, a Swarm job service, a Slurm job array), so a cancel
stops every member. Its state sums up the members': running while any runs, then succeeded only
when all did. A local sweep (``jupyter envpack run --sweep``) is recorded once it is over, with
its members' final states stored in the record (``options["sweep"]["states"]``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from .base import Backend, JobState, JobStatus

SWEEP_KEY = "sweep"
_ORDER = ("running", "queued", "succeeded", "failed", "cancelled", "lost")


def sweep_options(
    members: int, max_parallel: int, states: list[str] | None = None
) -> dict[str, Any]:
    """What a sweep's record keeps under ``options["sweep"]``."""
    found: dict[str, Any] = {"members": members, "max_parallel": max_parallel}
    if states is not None:
        found["states"] = states
    return found


def is_sweep(options: Mapping[str, Any]) -> bool:
    """Whether a record's options are a sweep's."""
    return isinstance(options.get(SWEEP_KEY), Mapping)


def counts_text(states: Mapping[int, JobStatus] | list[str]) -> str:
    """``"4 succeeded, 1 failed, 1 running"`` (fixed order, zero counts left out)."""
    values = states if isinstance(states, list) else [s.state.value for s in states.values()]
    counted = Counter(values)
    return ", ".join(f"{counted[k]} {k}" for k in _ORDER if counted[k])


def summarize(states: Mapping[int, JobStatus], total: int) -> JobStatus:
    """The sweep's own status from its members' (members the backend does not show yet count as queued)."""
    values = [s.state for s in states.values()] + [JobState.PENDING] * (total - len(states))
    text = counts_text([v.value for v in values])
    if JobState.RUNNING in values:
        return JobStatus(JobState.RUNNING, "running", text)
    if JobState.PENDING in values:
        return JobStatus(JobState.PENDING, "pending", text)
    if all(v is JobState.SUCCEEDED for v in values):
        return JobStatus(JobState.SUCCEEDED, "completed", text)
    return JobStatus(JobState.FAILED, "members-failed", text)


def _swarm_members(backend: Any, handle: str) -> dict[int, JobStatus]:
    from .swarm_sweep import _slot, _task_log, member_status

    tasks = backend.client.api.tasks(filters={"service": handle})
    newest = {_slot(t): t for t in sorted(tasks, key=lambda t: t.get("CreatedAt", ""))}
    found = {}
    for index, task in newest.items():
        status = backend._task_status(task)
        if status.state is JobState.SUCCEEDED:  # the picker's exit line (its last) says how the
            status = member_status(status, _task_log(backend, task["ID"], tail="5"))  # run ended
        found[index] = status
    return found


def member_states(backend_name: str, backend: Backend, handle: str, total: int) -> dict[int, Any]:
    """Index → :class:`JobStatus` of every member of the sweep ``handle`` on ``backend``."""
    if backend_name == "kubernetes":
        from .k8s_sweep import read_members

        return read_members(backend, handle, total)  # type: ignore[arg-type]
    if backend_name == "slurm":
        from .slurm import status_from_fields

        fields = backend.members(handle)  # type: ignore[attr-defined]
        return {i: status_from_fields(f) for i, f in fields.items() if i < total}
    if backend_name == "swarm":
        return _swarm_members(backend, handle)
    return {}


def stored_states(options: Mapping[str, Any]) -> dict[int, JobStatus]:
    """The members' final states a local sweep's record keeps."""
    states = options.get(SWEEP_KEY, {}).get("states") or []
    return {i: JobStatus(JobState(s)) for i, s in enumerate(states)}


def refresh_sweep(record: Any, index: Any, backend: Backend) -> dict[int, JobStatus]:
    """Ask the backend for every member, store the sweep's summed-up status; return the members'.

    A finished sweep keeps its stored status (final states never change); a local one is never
    asked: its record holds its members' states.
    """
    total = int(record.options[SWEEP_KEY]["members"])
    if record.backend == "local" or not record.handle:
        return stored_states(record.options)
    states = member_states(record.backend, backend, record.handle, total)
    index.record_status(record.id, summarize(states, total))
    return states


def index_sweep(
    job_id: str, backend: str, notebook: str, image: str, options: dict[str, Any]
) -> Any:
    """Add a sweep's record to the job index (before the cluster is contacted); return it."""
    from .jobs import JobIndex, JobRecord

    record = JobRecord(id=job_id, backend=backend, notebook=notebook, image=image, options=options)
    return JobIndex().add(record)


def record_local_sweep(notebook: str, image: str, runs: list[Any], max_parallel: int) -> Any:
    """Index a finished local sweep (``jupyter envpack run --sweep``) with its members' states."""
    from .jobs import JobIndex, new_job_id

    states = [r.state for r in sorted(runs, key=lambda r: r.index)]
    sweep = sweep_options(len(runs), max_parallel, states)
    record = index_sweep(new_job_id(), "local", notebook, image, {SWEEP_KEY: sweep})
    status = summarize(stored_states({SWEEP_KEY: sweep}), len(runs))
    JobIndex().record_status(record.id, status)
    return record


def member_log(record: Any, backend: Any, index: int) -> str:
    """The log of member ``index`` of a cluster sweep (the pod, array task or Swarm task)."""
    from ..errors import InputError, NotFoundError

    total = int(record.options[SWEEP_KEY]["members"])
    if not 0 <= index < total or record.backend == "local" or not record.handle:
        raise InputError(
            f"sweep {record.id} has no member {index} with a log",
            hint=f"members are 0..{total - 1}; a local sweep's notebooks are in its folder",
        )
    if record.backend == "kubernetes":
        from .k8s_sweep import member_pod
        from .kubernetes import parse_handle

        namespace, _, name = parse_handle(record.handle)
        pod = member_pod(backend.pods(namespace, name), index)
        if pod is None:
            raise NotFoundError(f"member {index} of sweep {record.id} has no pod yet")
        return str(backend.pod_log(namespace, pod.metadata.name))
    if record.backend == "slurm":
        return str(backend.logs(f"{record.handle}_{index}"))
    from .swarm_sweep import _slot, _task_log

    tasks = backend.client.api.tasks(filters={"service": record.handle})
    mine = sorted((t for t in tasks if _slot(t) == index), key=lambda t: t.get("CreatedAt", ""))
    if not mine:
        raise NotFoundError(f"member {index} of sweep {record.id} has no task yet")
    return _task_log(backend, mine[-1]["ID"])
