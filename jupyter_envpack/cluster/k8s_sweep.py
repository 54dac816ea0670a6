"""A sweep as one Kubernetes Indexed Job: submit it, read each member's status, collect results.

The Job comes from :func:`.k8s_manifests.make_sweep_job`. A member is a completion index: its
status is final once the index is in the Job's ``completedIndexes`` or ``failedIndexes``
(``backoffLimitPerIndex``), else it is read from the newest pod carrying that index (the
``batch.kubernetes.io/job-completion-index`` annotation) like a single job's. Each member's
executed notebook comes back in the log of its pod, so results are collected exactly like the
Slurm and Swarm sweeps (same file names, same ``summary.csv``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ..events import Reporter, null_reporter
from ..execute.sweep import SweepRun, collect_runs, wait_members
from .base import JobSpec, JobState, JobStatus, status_from_exit_code
from .k8s_manifests import INDEX_ANNOTATION, make_sweep_job
from .kubernetes import KubernetesBackend, _k8s, parse_handle, pod_status


def render_sweep(
    backend: KubernetesBackend, spec: JobSpec, cells: list[str], max_parallel: int
) -> dict[str, Any]:
    """The Indexed Job :func:`submit_sweep` would create (no cluster contacted)."""
    options = replace(backend.options, namespace=backend.namespace)
    return make_sweep_job(spec, cells, max_parallel, options)


def submit_sweep(
    backend: KubernetesBackend,
    spec: JobSpec,
    cells: list[str],
    max_parallel: int,
    reporter: Reporter = null_reporter,
) -> str:
    """Create the sweep's Indexed Job; return its handle ``<namespace>/job/<name>``."""
    return backend.create(render_sweep(backend, spec, cells, max_parallel), reporter)


def parse_indexes(text: str | None) -> set[int]:
    """``"0-2,5"`` (a Job's ``completedIndexes``/``failedIndexes``) → ``{0, 1, 2, 5}``."""
    found: set[int] = set()
    for part in (text or "").split(","):
        low, _, high = part.strip().partition("-")
        if low.isdigit():
            found.update(range(int(low), int(high or low) + 1))
    return found


def pod_index(pod: Any) -> int | None:
    """The completion index a pod runs (``None`` for a pod of no Indexed Job)."""
    annotations = (pod.metadata.annotations or {}) if pod.metadata else {}
    value = str(annotations.get(INDEX_ANNOTATION, ""))
    return int(value) if value.isdigit() else None


def _exit_code(pods: list[Any]) -> int | None:
    from .kubernetes import _exit_code as code_of

    return next((c for c in (code_of(p) for p in reversed(pods)) if c is not None), None)


def member_statuses(
    job: Any, pods: list[Any], total: int, pull_grace: float = 60.0
) -> dict[int, JobStatus]:
    """Index → status of every member of the sweep Job ``job`` (``pods`` oldest first)."""
    status = job.status
    done = parse_indexes(getattr(status, "completed_indexes", None))
    failed = parse_indexes(getattr(status, "failed_indexes", None))
    over = (
        next(
            (c for c in (status.conditions or []) if c.type == "Failed" and c.status == "True"),
            None,
        )
        if status
        else None
    )
    by_index: dict[int, list[Any]] = {}
    for pod in pods:
        index = pod_index(pod)
        if index is not None:
            by_index.setdefault(index, []).append(pod)
    found = {}
    for index in range(total):
        mine = by_index.get(index, [])
        node = next((p.spec.node_name for p in reversed(mine) if p.spec), None)
        if index in done:
            found[index] = status_from_exit_code(0, node)
        elif index in failed:
            found[index] = _failed_member(_exit_code(mine), node)
        elif over is not None:  # the whole Job ended (its deadline): the rest never ran to the end
            found[index] = JobStatus(
                JobState.FAILED, "job-failed", f"{over.reason}: the sweep Job ended", None, node
            )
        else:
            found[index] = pod_status(mine, pull_grace)
    return found


def _failed_member(code: int | None, node: str | None) -> JobStatus:
    if code not in (None, 0):
        return status_from_exit_code(code, node)
    return JobStatus(JobState.FAILED, "index-failed", "the member failed", code, node)


def read_members(backend: KubernetesBackend, handle: str, total: int) -> dict[int, JobStatus]:
    """Ask the cluster for the sweep Job and its pods; return each member's status."""
    namespace, _, name = parse_handle(handle)
    job = backend.call(backend._batch().read_namespaced_job, name, namespace)
    return member_statuses(job, backend.pods(namespace, name), total, backend.pull_grace)


def member_pod(pods: list[Any], index: int) -> Any | None:
    """The pod whose log holds member ``index``'s result: its succeeded pod, else its newest."""
    mine = [p for p in pods if pod_index(p) == index]
    done = [p for p in mine if (p.status and p.status.phase) == "Succeeded"]
    return (done or mine or [None])[-1]


def _duration(pod: Any) -> float | None:
    for status in (pod.status.container_statuses or []) if pod and pod.status else []:
        ended = status.state.terminated if status.state else None
        if ended is not None and ended.started_at and ended.finished_at:
            return float((ended.finished_at - ended.started_at).total_seconds())
    return None


def follow_k8s_sweep(
    backend: KubernetesBackend,
    handle: str,
    rows: list[dict[str, Any]],
    *,
    folder: Path,
    stem: str,
    timeout: float,
    poll: float = 2.0,
    reporter: Any = None,
    watch_seconds: int = 10,
) -> list[SweepRun]:
    """Wait for every member of the sweep Job (a watch on it between reads, like a single
    job's wait), fetch each notebook, return the runs."""
    namespace, _, name = parse_handle(handle)
    version: list[str | None] = [None]

    def pause(remaining: float) -> None:
        seconds = int(max(1, min(watch_seconds, remaining)))
        version[0] = backend._watch_once(_k8s(), namespace, name, version[0], seconds)

    states = wait_members(
        lambda: read_members(backend, handle, len(rows)), len(rows), timeout, poll, reporter, pause
    )
    pods = backend.pods(namespace, name)
    chosen = {i: member_pod(pods, i) for i in range(len(rows))}

    def read_log(index: int) -> str:
        pod = chosen[index]
        return "" if pod is None else backend.pod_log(namespace, pod.metadata.name)

    runs = collect_runs(rows, states, read_log, folder=folder, stem=stem)
    for run in runs:
        run.duration = _duration(chosen[run.index])
    return runs
