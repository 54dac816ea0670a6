"""The ``build`` and ``run`` operation kinds: thin calls into the core (docs/core-api.md).

Each kind's function executes in an :class:`~jupyter_envpack.operations.OperationManager` worker
thread, never on the IOLoop. The stages are sequenced by :mod:`jupyter_envpack.pipeline`. The core puts ``op.labels`` (``org.jupyter.envpack.operation=<id>``) on every
container and image it creates, which is how ``resume`` finds them again after a restart.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import CancelledError
from ..events import CancelToken, ProgressEvent, Reporter, StageClock
from ..operations import OPERATION_LABEL, Kind, LostError, OperationContext
from .schema import BUILD_FIELDS, RUN_FIELDS, validator

if TYPE_CHECKING:
    from ..execute import RunOptions
    from ..image import BuildOptions
    from ..pipeline import Prepared


def docker_client() -> Any:  # docker-py is untyped
    """Return a docker client (the core's ``connect``: a fast ``EngineError`` when down)."""
    from ..image.engine import connect

    return connect()


def snapshot_options(config: Any, options: dict[str, Any]) -> Any:
    """The config's snapshot options, reconstructing when the request says ``reconstruct``."""
    from dataclasses import replace

    from ..snapshot import ReconstructOptions

    base = config.snapshot_options()
    if not options.get("reconstruct"):
        return base
    image = options.get("base_image") or config.base_image
    return replace(base, reconstruct=ReconstructOptions(options.get("as_of"), None, image))


def _build_options(op: OperationContext, deadline: float | None) -> BuildOptions:
    return op.config.build_options(
        base_image=op.options.get("base_image"),
        deadline=deadline,
        idle_timeout=op.options.get("idle_timeout"),
        labels=dict(op.labels),
    )


def _prepare(
    op: OperationContext, reporter: Reporter, cancel: CancelToken, build: BuildOptions
) -> Prepared:
    """The operation's notebook through the pipeline's snapshot, with its build options."""
    from ..pipeline import prepare

    return prepare(
        op.notebook,
        build,
        kernel=op.options.get("kernel") or op.config.kernel,
        snapshot=snapshot_options(op.config, op.options),
        use_lock=False,
        max_bytes=op.config.max_notebook_size,
        reporter=reporter,
        cancel=cancel,
    )


def _build(
    op: OperationContext, reporter: Reporter, cancel: CancelToken, deadline: float | None
) -> dict[str, Any]:
    """Snapshot and build through the pipeline, or replay the no-op memo of an unchanged build."""
    from ..buildmemo import recall, remember_build, replay
    from ..pipeline import build

    notebook = str(op.notebook)
    options = _build_options(op, deadline)
    settings = _memo_settings(op, options)
    # a reconstruction depends on files the memo does not watch (requirements, the index)
    no_memo = options.no_cache or bool(op.options.get("reconstruct"))
    memo = None if no_memo else recall(notebook, settings)
    if memo is not None:  # unchanged notebook and environment, image still there
        replay(memo, reporter)
        op.set_handle(image=memo.image)
        return memo.result
    clock = StageClock(reporter)
    prepared = _prepare(op, clock, cancel, options)
    res = build(prepared, clock, cancel)
    clock.finish()
    op.set_handle(image=res.image)
    result = {
        **res.to_json(),
        "snapshot_hash": prepared.spec.hash,
        "origin": prepared.spec.origin,
        **({"reconstruction": prepared.spec.reconstruction} if prepared.spec.reconstructed else {}),
        # the snapshot's findings, then the build's (missing-command, unmapped-library)
        "warnings": [w.to_json() for w in prepared.spec.warnings]
        + (res.system or {}).get("warnings", []),
    }
    if not no_memo:
        remember_build(notebook, settings, result, prepared.spec, True, clock.kept)
    return result


def _memo_settings(op: OperationContext, options: BuildOptions) -> dict[str, Any]:
    """What shapes this build besides the notebook's bytes (the no-op memo's key)."""
    return {
        "surface": "server",
        "notebook": str(op.notebook),
        "kernel": op.options.get("kernel") or op.config.kernel,
        "max_bytes": op.config.max_notebook_size,
        "snapshot": repr(snapshot_options(op.config, op.options)),
        "build": repr(replace(options, labels={}, deadline=0.0, idle_timeout=0.0)),
    }


def run_build(op: OperationContext, reporter: Reporter, cancel: CancelToken) -> dict[str, Any]:
    """``build`` kind: snapshot the notebook and build its image."""
    return _build(op, reporter, cancel, op.options.get("deadline"))


def resume_build(op: OperationContext, reporter: Reporter, cancel: CancelToken) -> dict[str, Any]:
    """After a restart: the build stream died with the old server; its image may still exist."""
    client = docker_client()
    try:
        images = client.images.list(filters={"label": f"{OPERATION_LABEL}={op.id}"})
    finally:
        client.close()
    tags = [t for image in images for t in image.tags]
    if not tags:
        raise LostError("the server stopped during this build", hint="start the build again")
    return {"image": tags[0], "cached": True, "duration": None, "resumed": True}


def _report_json(op: OperationContext, report: Any, output: Path) -> dict[str, Any]:
    data: dict[str, Any] = report.to_json()
    data["output_path"] = op.relative(output)  # never a server path on the wire
    return data


def _run_options(op: OperationContext) -> RunOptions:
    """The core's ``RunOptions`` of a ``run`` operation (config, then the request's options)."""
    o = op.options
    output, mem = o.get("output"), o.get("mem_limit")
    return op.config.run_options(
        parameters=o.get("parameters") or {},
        cell_timeout=o.get("cell_timeout"),
        deadline=o.get("deadline"),
        mem_limit=str(mem) if mem is not None else None,
        cpus=o.get("cpus"),
        pids=int(o["pids"]) if o.get("pids") is not None else None,
        gpus=str(o["gpus"]) if o.get("gpus") is not None else None,
        network=o.get("network"),
        tolerance=o.get("tolerance"),
        labels=dict(op.labels),
        output=str(op.resolve_output(output)) if output else None,
    )


def run_run(op: OperationContext, reporter: Reporter, cancel: CancelToken) -> dict[str, Any]:
    """``run`` kind: build (cached when unchanged, skipped with ``image``), then execute."""
    from ..pipeline import rerun

    o = op.options
    image = o.get("image")
    engine = o.get("engine") or "docker"
    build, prepared = None, None
    if engine == "venv":  # no image: the venv is made from the snapshot
        prepared = _prepare(op, reporter, cancel, _build_options(op, o.get("build_deadline")))
    elif image is None:
        build = _build(op, reporter, cancel, o.get("build_deadline"))
        image = build["image"]
    options = _run_options(op)
    if o.get("sweep"):
        from .sweeps import run_sweep

        sweep = run_sweep(op, str(image), options, reporter, cancel)
        return {"image": image, "engine": "docker", "build": build, "sweep": sweep}
    rr, _ = rerun(op.notebook, prepared, engine, options, reporter, cancel, image)
    return {
        "image": rr.report.image,
        "engine": rr.report.engine,
        "build": build,
        "output_path": op.relative(rr.output_path),
        "exit_code": rr.exit_code,
        "duration": round(rr.duration, 3),
        "report": _report_json(op, rr.report, rr.output_path),
    }


def _wait_exit(container: Any, cancel: CancelToken) -> int:
    while True:
        container.reload()
        if container.status in ("exited", "dead"):
            return int(container.attrs.get("State", {}).get("ExitCode", -1))
        if cancel.wait(1.0):
            container.kill()
            raise CancelledError("run cancelled")


def resume_run(op: OperationContext, reporter: Reporter, cancel: CancelToken) -> dict[str, Any]:
    """After a restart: follow the run's container (found by label) until it exits, then
    collect its executed notebook like ``run_notebook`` does."""
    import docker.errors

    if op.options.get("sweep"):
        raise LostError("the server stopped during this sweep", hint="start the sweep again")
    client = docker_client()
    try:
        found = client.containers.list(all=True, filters={"label": f"{OPERATION_LABEL}={op.id}"})
        if not found:
            raise LostError(
                "the run's container is gone (the server stopped before it "
                "started, or it was removed)",
                hint="start the run again",
            )
        container = found[0]
        op.set_handle(container=container.id)
        reporter(ProgressEvent("run", f"following container {container.short_id} again", "info"))
        try:
            code = _wait_exit(container, cancel)
            return _resumed_result(op, container, code)
        finally:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True, v=True)
    finally:
        client.close()


def _resumed_result(op: OperationContext, container: Any, code: int) -> dict[str, Any]:
    """The ``run`` result of a re-followed container (the core's ``collect_run`` does the work)."""
    from ..execute.run import collect_run

    output = op.resolve_output(op.options["output"]) if op.options.get("output") else None
    rr = collect_run(container, op.notebook, code, _run_options(op), output=output)
    report = rr.report
    return {
        "image": report.image,
        "build": None,
        "output_path": op.relative(rr.output_path),
        "exit_code": code,
        "resumed": True,
        "report": _report_json(op, report, rr.output_path),
    }


def builtin_kinds(resolve_output: Callable[[str], Path]) -> list[Kind]:
    """Return the ``build`` and ``run`` kinds (``resolve_output`` checks ``options.output``)."""

    def validate_run(options: dict[str, Any]) -> dict[str, Any]:
        options = validator(RUN_FIELDS, "run option")(options)
        if options.get("output"):
            resolve_output(options["output"])
        if options.get("sweep"):
            from .sweeps import check_sweep

            check_sweep(options)
        return options

    return [
        Kind(
            "build",
            run_build,
            resume=resume_build,
            validate=validator(BUILD_FIELDS, "build option"),
            dedupe=True,
        ),
        # two identical runs at once would race on one output file: attach instead
        Kind("run", run_run, resume=resume_run, validate=validate_run, dedupe=True),
    ]
