"""Run a notebook inside its image, bring the executed copy back, compare → :class:`RunResult`.

The container runs as 1000:1000 with every capability dropped, ``no-new-privileges``, memory, CPU
and pids limits, a read-only root filesystem and no bind mounts (:mod:`.limits`): the notebook
goes in with ``put_archive`` and comes back with ``get_archive``, read with a cap, and is written
beside the notebook without following links (RELIABILITY H1-H5, H9, E6, L1, L4, L6).
"""

from __future__ import annotations

import io
import json
import tarfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..bounded import lines_capped, read_capped, too_large, untar_first_file
from ..contract import (
    EXIT_BAD_INPUT,
    EXIT_CELL_ERROR,
    EXIT_KERNEL_DIED,
    EXIT_KERNEL_START,
    EXIT_OK,
    EXIT_TIMEOUT,
    HOME,
    PARAMETERS_ENV,
    RUNNER_PYTHON,
    RUNNER_SCRIPT,
    USER_ID,
    WORKDIR,
)
from ..defaults import CELL_TIMEOUT, RUN_DEADLINE
from ..errors import CancelledError, EngineError, InputError, RunError
from ..events import CancelToken, ProgressEvent, Reporter, null_reporter
from ..gpu import gpu_start_error
from ..image.context import notebook_bytes, strip_outputs
from ..image.engine import base_labels, connect, engine_kind, engine_name
from ..image.refs import validate_reference
from ..safefs import safe_write
from ..snapshot.notebook import dumps_notebook, parse_notebook, read_notebook_bytes
from .compare import Report, compare_notebooks
from .limits import RunLimits, limit_cause, parse_memory
from .parameters import injection_index, parameters_cell_source, validate_parameters

OUTPUT_IN_CONTAINER = f"{HOME}/.envpack-output/executed.ipynb"  # in the writable home volume
MAX_EXECUTED_BYTES = 200 * 2**20  # the executed notebook read back (L6)
MAX_LOG_READ = 64 * 2**20  # container log bytes turned into events
MAX_CONTAINER_EVENTS = 1000  # warning/progress events a container may cause


@dataclass
class RunOptions:
    """Options of one rerun."""

    parameters: dict[str, Any] = field(default_factory=dict)
    output: str | None = None
    cell_timeout: float = CELL_TIMEOUT
    deadline: float = RUN_DEADLINE
    mem_limit: str | None = None
    network: bool = True
    tolerance: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)
    allow_errors: bool | None = None
    limits: RunLimits = field(default_factory=RunLimits)

    def validate(self) -> None:
        """Raise :class:`InputError` for options that cannot work."""
        validate_parameters(self.parameters)
        if self.cell_timeout <= 0 or self.deadline <= 0:
            raise InputError("timeouts must be positive")
        self.effective_limits().validate()
        if self.tolerance < 0:
            raise InputError("tolerance must be ≥ 0")

    def effective_limits(self) -> RunLimits:
        """``limits`` with ``mem_limit`` (the older option, e.g. ``--memory``) on top."""
        return replace(self.limits, memory=self.mem_limit) if self.mem_limit else self.limits


__all__ = ["RunLimits", "RunOptions", "RunResult", "parse_memory", "run_notebook"]


@dataclass
class RunResult:
    """The executed notebook's path and the report."""

    output_path: Path
    report: Report
    exit_code: int
    duration: float

    def to_json(self) -> dict[str, Any]:
        """JSON form (REST results)."""
        return {
            "output_path": str(self.output_path),
            "exit_code": self.exit_code,
            "duration": round(self.duration, 3),
            "report": self.report.to_json(),
        }


def has_errors(nb: Any) -> bool:
    """True when the notebook stored an error output (then the rerun goes on after errors)."""
    return any(
        o.get("output_type") == "error"
        for c in nb.get("cells", [])
        if c.get("cell_type") == "code"
        for o in c.get("outputs", [])
    )


def default_output(nb_path: Path) -> Path:
    """``<stem>.envpack.ipynb`` beside the notebook."""
    return nb_path.with_name(f"{nb_path.stem}.envpack.ipynb")


def _tar_one(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.uid = info.gid = USER_ID
        info.mode = 0o644
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _read_executed(container: Any) -> str:
    """The executed notebook's text, read with a cap however large the container made it."""
    what = "the executed notebook"
    chunks, stat = container.get_archive(OUTPUT_IN_CONTAINER)
    if int(stat.get("size") or 0) > MAX_EXECUTED_BYTES:
        chunks.close()
        raise too_large(what, MAX_EXECUTED_BYTES)
    data = untar_first_file(
        read_capped(chunks, MAX_EXECUTED_BYTES + 2**20, what), MAX_EXECUTED_BYTES, what
    )
    if data is None:
        raise RunError("the container produced no executed notebook", reason="no-result")
    return data.decode("utf-8", "replace")


def code_cell_ordinals(nb: Any, parameters: dict[str, Any]) -> list[int]:
    """For each cell of the notebook as the runner sees it, how many code cells come before it."""
    kinds = [c.get("cell_type") for c in nb.get("cells", [])]
    if parameters:
        kinds.insert(injection_index(nb), "code")
    ordinals, seen = [], 0
    for kind in kinds:
        ordinals.append(seen)
        seen += kind == "code"
    return ordinals


def _cell_done(msg: dict[str, Any], ordinals: Sequence[int]) -> tuple[int, int]:
    """(code cells done, code cells in all) from the runner's cell-start line, whose own counter
    also counts markdown cells; clamped so that progress never passes the end."""
    total = max(1, int(msg["total"]))
    index = msg.get("index")
    if isinstance(index, int) and 0 <= index < len(ordinals):
        done = ordinals[index]
    else:
        done = int(msg.get("done", 0))
    return max(0, min(done, total - 1)), total


def cell_progress(msg: dict[str, Any], ordinals: Sequence[int]) -> ProgressEvent:
    """``cell k/n`` from the runner's cell-start line."""
    done, total = _cell_done(msg, ordinals)
    return ProgressEvent("run", f"cell {done + 1}/{total}", "progress", done / total)


class RunnerLog:
    """The runner's stderr lines → progress, warning and log events, with a budget (L6)."""

    def __init__(
        self, reporter: Reporter, ordinals: Sequence[int] = (), events: int = MAX_CONTAINER_EVENTS
    ) -> None:
        self.reporter, self.ordinals, self.left, self.done = reporter, ordinals, events, -1

    def emit(self, event: ProgressEvent) -> None:
        """Report ``event`` while the budget lasts (and say once that it ran out)."""
        if self.left > 0:
            self.left -= 1
            self.reporter(event)
            if self.left == 0:
                self.reporter(ProgressEvent("run", "the container sent too many events", "warning"))

    def line(self, line: str) -> None:
        """Turn one stderr line of the runner script into an event."""
        try:
            msg = json.loads(line)
        except ValueError:
            self.reporter(ProgressEvent("run", line[:4096], "log"))  # the manager caps log lines
            return
        if not isinstance(msg, dict):
            return
        if msg.get("envpack") == "cell" and isinstance(msg.get("total"), int) and msg["total"] > 0:
            done, _total = _cell_done(msg, self.ordinals)
            if self.done < done:  # forward only
                self.done = done
                self.emit(cell_progress(msg, self.ordinals))
        elif msg.get("envpack") == "error":
            self.emit(ProgressEvent("run", str(msg.get("message"))[:2000], "warning"))


def _follow_logs(container: Any, reporter: Reporter, tail: list[str], ordinals: list[int]) -> None:
    log = RunnerLog(reporter, ordinals)
    try:
        stream = container.logs(stream=True, follow=True, stdout=False, stderr=True)
        for line in lines_capped(stream, MAX_LOG_READ):
            tail.append(line[:4096])
            del tail[:-50]
            log.line(line)
    except Exception:  # noqa: S110 - the log stream ends when the container goes
        pass


def run_notebook(
    image: str,
    nb_path: str | Path,
    options: RunOptions | None = None,
    reporter: Reporter = null_reporter,
    cancel: CancelToken | None = None,
    client: Any = None,
) -> RunResult:
    """Execute ``nb_path`` in ``image`` and report cell by cell whether it reproduced."""
    import docker.errors

    started = time.monotonic()
    opts = options or RunOptions()
    opts.validate()
    validate_reference(image)
    path = Path(nb_path)
    original = parse_notebook(read_notebook_bytes(path), name=path.name)
    allow_errors = opts.allow_errors if opts.allow_errors is not None else has_errors(original)
    output = Path(opts.output) if opts.output else default_output(path)
    client = client or connect()
    command = [
        RUNNER_PYTHON,
        RUNNER_SCRIPT,
        "--input",
        f"{WORKDIR}/{path.name}",
        "--output",
        OUTPUT_IN_CONTAINER,
        "--cell-timeout",
        str(opts.cell_timeout),
    ]
    if allow_errors:
        command.append("--allow-errors")
    env = {"HOME": HOME, "PYTHONUNBUFFERED": "1"}
    if opts.parameters:
        env[PARAMETERS_ENV] = parameters_cell_source(opts.parameters)
    limits = opts.effective_limits()
    engine = engine_kind(client) if limits.gpus else "docker"
    host_config = {**limits.host_config(engine), "network_disabled": not opts.network}
    reporter(ProgressEvent("run", f"starting {image}", "step", 0.0))
    try:
        container = client.containers.create(
            image,
            command=command,
            user=f"{USER_ID}:{USER_ID}",
            environment=env,
            labels=base_labels("run", opts.labels),
            working_dir=WORKDIR,
            detach=True,
            **host_config,
        )
    except docker.errors.ImageNotFound:
        raise RunError(
            f"image {image} does not exist",
            reason="no-image",
            hint="build it first with `jupyter envpack build`",
        ) from None
    except docker.errors.APIError as exc:
        raise gpu_start_error(str(exc.explanation)) or EngineError(
            f"the engine refused to create the container: {exc.explanation}"
        ) from None
    tail: list[str] = []
    try:
        container.put_archive(WORKDIR, _tar_one(path.name, notebook_bytes(strip_outputs(original))))
        _start(container)
        follower = threading.Thread(
            target=_follow_logs,
            args=(container, reporter, tail, code_cell_ordinals(original, opts.parameters)),
            daemon=True,
        )
        follower.start()
        code = _wait(client, container, opts, cancel)
        follower.join(timeout=5)
        result = collect_run(
            container,
            path,
            code,
            opts,
            output=output,
            image=image,
            allow_errors=allow_errors,
            log_tail=tail,
            original=original,
            reporter=reporter,
        )
        result.report.engine = engine_name(client)
    finally:
        try:
            container.remove(force=True, v=True)  # v: its anonymous home volume too
        except docker.errors.APIError:
            pass
    result.duration = time.monotonic() - started
    return result


def _start(container: Any) -> None:
    """Start the container; an engine that cannot give it the GPUs asked for says how to fix it."""
    import docker.errors

    try:
        container.start()
    except docker.errors.APIError as exc:
        raise gpu_start_error(str(exc.explanation or exc)) or exc from None


def collect_run(
    container: Any,
    nb_path: str | Path,
    code: int,
    options: RunOptions | None = None,
    output: Path | None = None,
    image: str | None = None,
    allow_errors: bool | None = None,
    log_tail: list[str] | None = None,
    original: Any = None,
    reporter: Reporter = null_reporter,
) -> RunResult:
    """Turn an exited run container into a :class:`RunResult`: executed notebook copied out and
    written (atomically) to ``output``, compared with ``nb_path``. Used by :func:`run_notebook`
    and by the server when it follows a run again after a restart. The caller removes the container.
    """
    import docker.errors

    opts = options or RunOptions()
    limits = opts.effective_limits()
    path = Path(nb_path)
    tail = log_tail or []
    oom = _exit_state(container, code, limits, tail)
    try:
        executed_text = _read_executed(container)
    except docker.errors.NotFound:
        if oom:
            raise _oom_error(limits) from None
        raise RunError(
            f"the container wrote no executed notebook (exit {code}): " + " | ".join(tail[-5:]),
            reason="no-result",
        ) from None
    image = image or ((container.image.tags or [container.image.id])[0])
    return finish_run(
        path,
        code,
        executed_text,
        opts,
        output,
        image,
        allow_errors,
        original,
        reporter,
        oom=oom,
        limits=limits,
    )


def finish_run(
    path: Path,
    code: int,
    executed_text: str,
    opts: RunOptions,
    output: Path | None,
    image: str | None,
    allow_errors: bool | None,
    original: Any,
    reporter: Reporter,
    engine: str = "docker",
    oom: bool = False,
    limits: RunLimits | None = None,
) -> RunResult:
    """Write the executed notebook (never through a link) and compare it → :class:`RunResult`."""
    if original is None:
        original = parse_notebook(read_notebook_bytes(path), name=path.name)
    if allow_errors is None:
        allow_errors = has_errors(original)
    output = output or (Path(opts.output) if opts.output else default_output(path))
    executed = parse_notebook(executed_text.encode("utf-8"), name="the executed notebook")
    keep_notebook_kernel(executed, original)
    output.parent.mkdir(parents=True, exist_ok=True)
    safe_write(output, dumps_notebook(executed))
    report = compare_notebooks(original, executed, opts.tolerance, opts.parameters)
    report.run_status = _run_status(code, allow_errors, oom, executed)
    report.limits = limits.to_json() if limits is not None else None
    report.image = image
    report.engine = engine
    report.output_path = str(output)
    reporter(ProgressEvent("run", f"executed notebook written to {output.name}", "info", 1.0))
    return RunResult(output, report, code, 0.0)


def keep_notebook_kernel(executed: Any, original: Any) -> None:
    """Give the executed copy the notebook's own ``kernelspec`` and ``language_info``.

    JupyterLab rewrites both when it connects a kernel, so a copy carrying the image's values
    opened as modified (issue 12.4). The image's values stay under ``metadata.envpack``.
    """
    meta = executed.setdefault("metadata", {})
    ours = meta.setdefault("envpack", {})
    mine = original.get("metadata") or {}
    for key in ("kernelspec", "language_info"):
        if key in meta:
            ours[key] = meta[key]
        if key in mine:
            meta[key] = mine[key]


def _oom_error(limits: RunLimits) -> RunError:
    return RunError(
        f"the notebook ran out of memory (limit {limits.memory})",
        reason="out-of-memory",
        hint="raise the limit with --memory (c.EnvPack.run_memory)",
    )


def _exit_state(container: Any, code: int, limits: RunLimits, tail: list[str]) -> bool:
    """Raise for an exit without a usable result; return whether the engine OOM-killed."""
    import docker.errors

    try:
        container.reload()
    except docker.errors.NotFound:
        raise RunError(
            "the container was removed before its result was collected", reason="lost"
        ) from None
    oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
    if oom and code not in {EXIT_CELL_ERROR, EXIT_KERNEL_DIED}:
        raise _oom_error(limits)  # the runner itself was killed: no executed notebook
    if code in {137, 143}:
        raise RunError(
            f"the container was killed from outside (exit {code})",
            reason="killed",
            hint="run it again; check `docker events` for who stopped it",
        )
    check_exit(code, tail)
    return oom


def check_exit(code: int, tail: list[str]) -> None:
    """Raise :class:`RunError` for runner exit codes that are not the notebook's doing."""
    if code == EXIT_KERNEL_START:
        raise RunError(
            "the kernel could not start in the image: " + " | ".join(tail[-5:]),
            reason="kernel-start",
            hint="the image needs ipykernel: pip install ipykernel in the kernel's environment "
            "(or let envpack pin it from your index: see the snapshot's no-ipykernel warning) "
            "and build again",
        )
    if code == EXIT_BAD_INPUT or code not in {
        EXIT_OK,
        EXIT_CELL_ERROR,
        EXIT_TIMEOUT,
        EXIT_KERNEL_DIED,
    }:
        raise RunError(
            f"the runner failed in the container (exit {code}): " + " | ".join(tail[-5:]),
            reason="runner-failed",
        )


def _run_status(code: int, allow_errors: bool, oom: bool, executed: Any) -> str:
    """``completed`` … ``kernel-died``, or the limit that stopped a cell (L4)."""
    if oom:
        return "out-of-memory"
    cause = limit_cause(executed) if code != EXIT_OK else None
    return (
        cause
        or {
            EXIT_OK: "completed",
            EXIT_CELL_ERROR: "completed" if allow_errors else "cell-error",
            EXIT_TIMEOUT: "timeout",
            EXIT_KERNEL_DIED: "kernel-died",
        }[code]
    )


def _wait(client: Any, container: Any, opts: RunOptions, cancel: CancelToken | None) -> int:
    import requests

    end = time.monotonic() + opts.deadline
    while True:
        if cancel is not None and cancel.cancelled:
            container.kill()
            raise CancelledError("run cancelled")
        if time.monotonic() > end:
            try:
                container.stop(timeout=10)
            except Exception:  # noqa: S110 - removed in the caller's finally
                pass
            raise RunError(
                f"the notebook did not finish within {opts.deadline:.0f} s",
                reason="deadline",
                hint="raise --deadline, or look for a hanging cell",
            )
        try:
            result = client.api.wait(container.id, timeout=1)
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
            continue
        except Exception as exc:
            import docker.errors

            if isinstance(exc, docker.errors.NotFound):
                raise RunError(
                    "the container disappeared while the notebook ran", reason="lost"
                ) from None
            raise
        return int(result.get("StatusCode", -1))
