"""The server's ``job`` operation kind: a cluster job as an envpack operation.

Registered by default through ``c.EnvPack.operation_kinds = {"job": "jupyter_envpack.cluster.operation:
job_kind"}``. The operation id is the job id, so the cluster objects carry
``org.jupyter.envpack.job=<operation id>`` as well as ``org.jupyter.envpack.operation=<id>``; the
backend, its options and the handle go into ``op.handle`` before and right after launch, so
:func:`resume_job` can follow the job again after a server restart.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import EnvPack
from ..errors import ClusterError, InputError, RunError
from ..events import CancelToken, ProgressEvent
from .base import JobState, JobStatus
from .jobs import JobIndex, JobRecord, SubmitOptions, follow, submit

Reporter = Callable[[ProgressEvent], None]


def validate_job(options: dict[str, Any]) -> dict[str, Any]:
    """Check a job request's options (unknown or ill-typed fields are a 400)."""
    from ..execute.parameters import validate_parameters
    from ..server.schema import JOB_FIELDS, check_fields

    check_fields(options, JOB_FIELDS, "job option")
    validate_parameters(options.get("parameters") or {})
    _submit_options(options, None, {}).validate()
    return options


def _submit_options(
    o: dict[str, Any], config: EnvPack | None, labels: dict[str, str]
) -> SubmitOptions:
    """Request options over ``c.EnvPack`` (``None``: built-in defaults only)."""
    return (config or EnvPack()).submit_options(
        backend=o.get("backend"),
        registry=o.get("registry"),
        parameters=o.get("parameters"),
        cell_timeout=o.get("cell_timeout"),
        deadline=o.get("deadline"),
        cpu=o.get("cpu"),
        memory=o.get("memory"),
        cpu_request=o.get("cpu_request"),
        memory_request=o.get("memory_request"),
        constraints=o.get("constraints"),
        schedule=o.get("schedule"),
        timezone=o.get("timezone"),
        namespace=o.get("namespace"),
        kube_context=o.get("context"),
        image_pull_secrets=o.get("image_pull_secrets"),
        partition=o.get("partition"),
        account=o.get("account"),
        gpus=int(o["gpus"]) if o.get("gpus") else None,
        runtime=o.get("runtime"),
        labels=labels,
    )


def _result(
    op: Any, record: JobRecord, status: JobStatus | None, path: Path | None
) -> dict[str, Any]:
    state = (
        status.to_json()
        if status
        else {"state": "scheduled" if record.options.get("schedule") else "submitted"}
    )
    return {
        "job_id": record.id,
        "backend": record.backend,
        "handle": record.handle,
        "image": record.image,
        **state,
        "output_path": op.relative(path) if path is not None else None,
    }


def _finish(op: Any, record: JobRecord, status: JobStatus, path: Path | None) -> dict[str, Any]:
    if status.state is JobState.SUCCEEDED:
        return _result(op, record, status, path)
    if status.state is JobState.LOST:
        from ..operations import LostError

        raise LostError(f"job {record.id}: {status.message}", hint="submit it again")
    if status.exit_code is not None:
        raise RunError(
            f"job {record.id}: {status.message}",
            reason=status.reason,
            hint="the executed notebook was fetched when the job left one"
            if path
            else "see the job's logs",
        )
    raise ClusterError(f"job {record.id}: {status.message}", hint="see the job's logs")


def _output(op: Any) -> Path | None:
    output = op.options.get("output")
    return op.resolve_output(output) if output else None


def run_job(op: Any, reporter: Reporter, cancel: CancelToken) -> dict[str, Any]:
    """``job`` kind: build, push, submit, then (unless ``wait`` is false or it is a CronJob)
    follow the job to its end and write the executed notebook inside the contents root."""
    o = op.options
    opts = _submit_options(o, op.config, dict(op.labels))
    build = op.config.build_options(base_image=o.get("base_image"), labels=dict(op.labels))

    def remember(record: JobRecord) -> None:
        op.set_handle(
            job_id=record.id,
            backend=record.backend,
            handle=record.handle,
            options=record.options,
            image=record.image,
        )  # API data: no server paths

    wait = o.get("wait", True) and not opts.schedule
    done = submit(
        str(op.notebook),
        opts,
        image=o.get("image"),
        build=build,
        kernel=o.get("kernel") or op.config.kernel,
        reporter=reporter,
        cancel=cancel,
        wait=False,
        index=JobIndex(),
        job_id=op.id[:12],
        on_record=remember,
    )
    if not wait:
        return _result(op, done.record, None, None)
    status, path = follow(
        done.record,
        index=JobIndex(),
        reporter=reporter,
        cancel=cancel,
        config=op.config,
        output=_output(op),
    )
    return _finish(op, done.record, status, path)


def resume_job(op: Any, reporter: Reporter, cancel: CancelToken) -> dict[str, Any]:
    """After a server restart: follow the job again from ``op.handle`` (or declare it lost)."""
    from ..operations import LostError

    h = op.handle
    if not h.get("handle"):
        raise LostError(
            "the server stopped before the job reached the cluster", hint="submit it again"
        )
    record = JobRecord(
        id=h["job_id"],
        backend=h["backend"],
        notebook=str(op.notebook),
        image=h.get("image", ""),
        options=h.get("options") or {},
        handle=h["handle"],
    )
    index = JobIndex()
    try:
        index.get(record.id)
    except InputError:
        index.add(record)
    reporter(ProgressEvent("job", f"following job {record.id} again", "info"))
    status, path = follow(
        record, index=index, reporter=reporter, cancel=cancel, config=op.config, output=_output(op)
    )
    return _finish(op, record, status, path)


def _kind() -> Any:
    from ..operations import Kind

    return Kind("job", run_job, resume=resume_job, validate=validate_job, dedupe=False)


job_kind = _kind()
