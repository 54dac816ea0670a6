"""The ``build`` and ``run`` operation kinds: thin calls into the core (docs/core-api.md).

Each runner executes in an :class:`~jupyter_envpack.operations.OperationManager` worker thread,
never on the IOLoop. The core puts ``op.labels`` (``org.jupyter.envpack.operation=<id>``) on every
container and image it creates, which is how ``resume`` finds them again after a restart.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import CancelledError
from ..events import CancelToken, ProgressEvent, StageClock
from ..operations import OPERATION_LABEL, Kind, LostError, OperationContext
from .schema import BUILD_FIELDS, RUN_FIELDS, validator

Reporter = Callable[[ProgressEvent], None]
#: How a re-followed run ended, by the runner's exit code (docs/core-api.md).


def docker_client() -> Any:
    """Return a docker client (the core's ``connect``: a fast ``EngineError`` when down)."""
    from ..image.engine import connect

    return connect()


def _snapshot(op: OperationContext, reporter: Reporter) -> Any:
    from ..snapshot import take_snapshot

    reporter(ProgressEvent("snapshot", "reading the notebook and its kernel's packages", "step"))
    spec = take_snapshot(
        str(op.notebook),
        kernel=op.options.get("kernel") or op.config.kernel,
        max_bytes=op.config.max_notebook_size,
        options=snapshot_options(op.config, op.options),
    )
    reporter(ProgressEvent("snapshot", spec.files_summary(), "info"))
    if spec.reconstructed:
        reporter(ProgressEvent("snapshot", spec.warnings[0].message, "warning"))
    return spec


def snapshot_options(config: Any, options: dict[str, Any]) -> Any:
    """The config's snapshot options, reconstructing when the request says ``reconstruct``."""
    from dataclasses import replace

    from ..snapshot import ReconstructOptions

    base = config.snapshot_options()
    if not options.get("reconstruct"):
        return base
    image = options.get("base_image") or config.base_image
    return replace(base, reconstruct=ReconstructOptions(options.get("as_of"), None, image))


def _build_options(op: OperationContext, deadline: float | None) -> Any:
    return op.config.build_options(
        base_image=op.options.get("base_image"),
        deadline=deadline,
        idle_timeout=op.options.get("idle_timeout"),
        labels=dict(op.labels),
    )


def _build(
    op: OperationContext, reporter: Reporter, cancel: CancelToken, deadline: float | None
) -> dict[str, Any]:
    from ..buildmemo import recall, remember_build, replay
    from ..image import build_image

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
    spec = _snapshot(op, clock)
    cancel.raise_if_cancelled("build")
    res = build_image(spec, notebook, options, reporter=clock, cancel=cancel)
    clock.finish()
    op.set_handle(image=res.image)
    result = {
        **res.to_json(),
        "snapshot_hash": spec.hash,
        "origin": spec.origin,
        **({"reconstruction": spec.reconstruction} if spec.reconstruction else {}),
        # the snapshot's findings, then the build's (missing-command, unmapped-library)
        "warnings": [w.to_json() for w in spec.warnings] + (res.system or {}).get("warnings", []),
    }
    if not no_memo:
        remember_build(notebook, settings, result, spec, True, clock.kept)
    return result


def _memo_settings(op: OperationContext, options: Any) -> dict[str, Any]:
    """What shapes this build besides the notebook's bytes (the no-op memo's key)."""
    return {
        "surface": "server",
        "notebook": str(op.notebook),
        "kernel": op.options.get("kernel") or op.config.kernel,
        "max_bytes": op.config.max_notebook_size,
        "snapshot": repr(op.config.snapshot_options()),
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


def _run_options(op: OperationContext) -> Any:
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
    from ..execute import run_notebook
    from ..pipeline import rerun

    o = op.options
    build = None
    image = o.get("image")
    venv = o.get("engine") == "venv"
    if image is None and not venv:
        build = _build(op, reporter, cancel, o.get("build_deadline"))
        image = build["image"]
    options = _run_options(op)
    if o.get("sweep"):
        from .sweeps import run_sweep

        sweep = run_sweep(op, str(image), options, reporter, cancel)
        return {"image": image, "engine": "docker", "build": build, "sweep": sweep}
    if venv:
        spec = _snapshot(op, reporter)
        bopts = _build_options(op, o.get("build_deadline"))
        rr, _ = rerun(spec, op.notebook, "venv", bopts, options, reporter, cancel, image=image)
    else:
        rr = run_notebook(str(image), str(op.notebook), options, reporter=reporter, cancel=cancel)
        if build is not None and build.get("origin") == "reconstructed":
            rr.report.origin = "reconstructed"
            rr.report.as_of = build["reconstruction"].get("as_of_used")
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
            return collect_run(op, container, code)
        finally:
            with contextlib.suppress(docker.errors.APIError):
                container.remove(force=True, v=True)
    finally:
        client.close()


def collect_run(op: OperationContext, container: Any, code: int) -> dict[str, Any]:
    """Turn an exited run container into the ``run`` result (output written, report made)."""
    from ..execute.run import collect_run as core_collect_run

    output = op.resolve_output(op.options["output"]) if op.options.get("output") else None
    rr = core_collect_run(container, op.notebook, code, _run_options(op), output=output)
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
