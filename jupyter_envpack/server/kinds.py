"""The ``build`` and ``run`` operation kinds: thin calls into the core (docs/core-api.md).

Each runner executes in an :class:`~jupyter_envpack.operations.OperationManager` worker thread,
never on the IOLoop. The core puts ``op.labels`` (``org.jupyter.envpack.operation=<id>``) on every
container and image it creates, which is how ``resume`` finds them again after a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import CancelledError, RunError
from ..events import CancelToken, ProgressEvent
from ..operations import OPERATION_LABEL, Kind, LostError, OperationContext
from .schema import BUILD_FIELDS, RUN_FIELDS, validator

Reporter = Callable[[ProgressEvent], None]
#: Runner exit codes (docs/core-api.md) → what went wrong.
EXIT_REASONS = {3: "a cell raised an error", 4: "a cell timed out", 5: "the kernel died",
                2: "the runner refused its input"}


def docker_client() -> Any:
    """Return a docker client (the core's ``engine.connect`` when present: fast 503 when down)."""
    try:
        from ..image.engine import connect
    except ImportError:  # the core has not landed yet
        import docker

        return docker.from_env(timeout=10)
    return connect()


def _build(op: OperationContext, reporter: Reporter, cancel: CancelToken,
           deadline: float | None) -> dict[str, Any]:
    from ..image import build_image
    from ..snapshot import take_snapshot

    notebook = str(op.notebook)
    reporter(ProgressEvent("snapshot", "reading the notebook and its kernel's packages", "step"))
    spec = take_snapshot(notebook, kernel=op.options.get("kernel") or op.config.kernel)
    cancel.raise_if_cancelled("build")
    options = op.config.build_options(base_image=op.options.get("base_image"), deadline=deadline,
                                      idle_timeout=op.options.get("idle_timeout"),
                                      labels=dict(op.labels))
    res = build_image(spec, notebook, options, reporter=reporter, cancel=cancel)
    op.set_handle(image=res.image)
    return {"image": res.image, "cached": res.cached, "duration": res.duration,
            "tag_hash": res.tag_hash, "snapshot_hash": spec.hash,
            "warnings": [w.to_json() for w in spec.warnings]}


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


def run_run(op: OperationContext, reporter: Reporter, cancel: CancelToken) -> dict[str, Any]:
    """``run`` kind: build (cached when unchanged, skipped with ``image``), then execute."""
    from ..execute import run_notebook

    o = op.options
    build = None
    image = o.get("image")
    if image is None:
        build = _build(op, reporter, cancel, o.get("build_deadline"))
        image = build["image"]
    output = o.get("output")
    options = op.config.run_options(
        parameters=o.get("parameters") or {}, cell_timeout=o.get("cell_timeout"),
        deadline=o.get("deadline"), mem_limit=o.get("mem_limit"), network=o.get("network"),
        tolerance=o.get("tolerance"), labels=dict(op.labels),
        output=str(op.resolve_output(output)) if output else None)
    rr = run_notebook(image, str(op.notebook), options, reporter=reporter, cancel=cancel)
    return {"image": image, "build": build, "output_path": op.relative(rr.output_path),
            "report": rr.report.to_json()}


def _wait_exit(container: Any, cancel: CancelToken) -> int:
    while True:
        container.reload()
        if container.status in ("exited", "dead"):
            return int(container.attrs.get("State", {}).get("ExitCode", -1))
        if cancel.wait(2.0):
            container.remove(force=True)
            raise CancelledError("run cancelled")


def resume_run(op: OperationContext, reporter: Reporter, cancel: CancelToken) -> dict[str, Any]:
    """After a restart: follow the run's container (found by label) until it exits."""
    client = docker_client()
    try:
        found = client.containers.list(all=True, filters={"label": f"{OPERATION_LABEL}={op.id}"})
        if not found:
            raise LostError("the run's container is gone (the server stopped before it "
                            "started, or it was removed)", hint="start the run again")
        container = found[0]
        op.set_handle(container=container.id)
        reporter(ProgressEvent("run", f"following container {container.short_id} again", "info"))
        code = _wait_exit(container, cancel)
        return finish_resumed_run(op, container, code)
    finally:
        client.close()


def finish_resumed_run(op: OperationContext, container: Any, code: int) -> dict[str, Any]:
    """Turn the exit of a re-followed run container into a result (or a ``RunError``)."""
    if code != 0:
        raise RunError(f"the run ended with exit code {code}: "
                       f"{EXIT_REASONS.get(code, 'the container failed')}", reason="run-failed")
    return {"image": container.attrs.get("Config", {}).get("Image"), "build": None,
            "output_path": None, "report": None, "exit_code": code, "resumed": True}


def builtin_kinds(resolve_output: Callable[[str], Path]) -> list[Kind]:
    """Return the ``build`` and ``run`` kinds (``resolve_output`` checks ``options.output``)."""

    def validate_run(options: dict[str, Any]) -> dict[str, Any]:
        options = validator(RUN_FIELDS, "run option")(options)
        if options.get("output"):
            resolve_output(options["output"])
        return options

    return [
        Kind("build", run_build, resume=resume_build, validate=validator(BUILD_FIELDS,
             "build option"), dedupe=True),
        Kind("run", run_run, resume=resume_run, validate=validate_run),
    ]
