"""The one job-backend interface, the job description it takes and the status it answers.

A backend (Docker Swarm, Kubernetes, or a third-party one) runs an envpack image that has already
been pushed to a registry the cluster can pull from. The image's runner prints the executed
notebook into the job's log between markers (see ``docs/core-api.md``), so every backend gets the
result back the same way: read the logs, decode the block.

Backends are registered one way: the entry-point group ``jupyter_envpack.backends`` (envpack's
own three included), which ``c.EnvPack.cluster_backends`` defaults to and may extend
(:meth:`jupyter_envpack.config.EnvPack.backend_class` resolves a name).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from ..contract import (
    EXIT_REASONS,
    HOME,
    LABEL,
    PARAMETERS_ENV,
    RESULT_BEGIN,
    RESULT_END,
    RUNNER_PYTHON,
    RUNNER_SCRIPT,
)
from ..defaults import RUN_DEADLINE
from ..errors import ClusterError
from ..events import CancelToken, ProgressEvent, Reporter, null_reporter
from ..operations.model import State

JobState = State
"""A job's state: the operations' own vocabulary (one for the server and the cluster)."""


@dataclass(frozen=True)
class JobStatus:
    """What a backend knows about one job right now.

    Parameters
    ----------
    state
        The job's :class:`JobState`.
    reason
        A stable slug (``completed``, ``cell-error``, ``image-pull-failed``, ``node-lost``...).
    message
        One human sentence that says what happened (never a secret).
    exit_code
        The runner's exit code, when the container finished.
    node
        Where the job ran or is running, when known.
    """

    state: JobState
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    node: str | None = None

    @property
    def terminal(self) -> bool:
        """Whether the job is over."""
        return self.state.terminal

    def to_json(self) -> dict[str, Any]:
        """Return the status as a JSON-ready dict."""
        return {
            "state": self.state.value,
            "reason": self.reason,
            "message": self.message,
            "exit_code": self.exit_code,
            "node": self.node,
        }


def status_from_exit_code(code: int | None, node: str | None = None) -> JobStatus:
    """Turn the runner's exit code into a final :class:`JobStatus`."""
    if code == 0:
        return JobStatus(JobState.SUCCEEDED, "completed", "the notebook ran to the end", 0, node)
    reason = EXIT_REASONS.get(code if code is not None else -1, "exit-code")
    words = {
        "bad-input": "the runner rejected its input (bad notebook or parameters)",
        "cell-error": "a cell raised an exception",
        "cell-timeout": "a cell ran longer than the cell timeout",
        "kernel-died": "the kernel died",
        "kernel-start": "the kernel could not start in the image (no ipykernel?)",
        "killed-or-oom": "the container was killed (out of memory, or stopped)",
    }
    message = words.get(reason, f"the runner exited with code {code}")
    return JobStatus(JobState.FAILED, reason, message, code, node)


@dataclass(frozen=True)
class JobSpec:
    """Everything a backend needs to run one notebook image as a job.

    Parameters
    ----------
    job_id
        envpack's own id for the job (a label on every object; the index key).
    name
        DNS-1123 base name of the cluster object (see :func:`..k8s_manifests.job_name`).
    image
        The pullable reference, e.g. ``registry:5000/envpack/analysis:0123…``.
    notebook
        The notebook's path as the user named it (shown, labelled; never read by the backend).
    parameters_cell
        Source of the parameters cell (from ``parameters_cell_source``), or ``None``.
    cell_timeout, deadline
        Seconds per cell, and for the whole job (the cluster enforces the deadline).
    cpu, memory
        Limits (cores, bytes); ``cpu_request``/``memory_request`` are reservations.
    labels
        Extra labels (the server adds ``org.jupyter.envpack.operation``).
    constraints
        Swarm placement constraints such as ``node.role==worker``.
    schedule, timezone
        A 5-field cron schedule (Kubernetes CronJob) and its IANA time zone.
    gpus
        GPUs the job needs (Kubernetes ``nvidia.com/gpu``, Swarm generic resources).
    """

    job_id: str
    name: str
    image: str
    notebook: str = ""
    parameters_cell: str | None = None
    cell_timeout: float | None = None
    deadline: float = RUN_DEADLINE
    cpu: float | None = None
    memory: int | None = None
    cpu_request: float | None = None
    memory_request: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    constraints: tuple[str, ...] = ()
    schedule: str | None = None
    timezone: str | None = None
    gpus: int | None = None

    def with_image(self, image: str) -> JobSpec:
        """Return a copy that runs ``image``."""
        return replace(self, image=image)

    def command(self) -> list[str]:
        """The runner's argv: run the baked notebook and print the result into the log."""
        argv = [RUNNER_PYTHON, RUNNER_SCRIPT, "--emit-result"]
        if self.cell_timeout:
            argv += ["--cell-timeout", f"{self.cell_timeout:g}"]
        return argv

    def environment(self) -> dict[str, str]:
        """The container's whole environment: an allowlist, never the caller's env (E6)."""
        env = {"HOME": HOME}
        if self.parameters_cell:
            env[PARAMETERS_ENV] = self.parameters_cell
        return env

    def all_labels(self) -> dict[str, str]:
        """envpack's labels plus the caller's (envpack's win)."""
        return {
            **dict(self.labels),
            LABEL: "1",
            f"{LABEL}.kind": "job",
            f"{LABEL}.job": self.job_id,
        }


@runtime_checkable
class Backend(Protocol):
    """What every job backend does. ``handle`` is the backend's own id for a submitted job."""

    name: str

    def render(self, spec: JobSpec) -> list[dict[str, Any]]:
        """Return what :meth:`submit` would send, without contacting anything (``--dry-run``)."""

    def submit(self, spec: JobSpec, reporter: Reporter = null_reporter) -> str:
        """Start the job and return its handle; submitting the same spec twice attaches."""

    def status(self, handle: str) -> JobStatus:
        """Return the job's current status; a vanished job is ``LOST``."""

    def logs(self, handle: str, tail: int | None = None) -> str:
        """Return the job's log text (stdout and stderr)."""

    def cancel(self, handle: str) -> None:
        """Stop the job and remove its cluster objects; unknown handles are fine."""


def collapse_result(log_text: str) -> str:
    """Replace the base64 result block of a job log with one readable line."""
    out: list[str] = []
    inside = 0
    for line in log_text.splitlines(keepends=True):
        if line.strip() == RESULT_BEGIN:
            inside = 1
            continue
        if inside and line.strip() == RESULT_END:
            out.append(
                f"[the executed notebook: {inside - 1} lines of gzip+base64 — "
                "`jupyter envpack fetch ID` writes it]\n"
            )
            inside = 0
            continue
        if inside:
            inside += 1
        else:
            out.append(line)
    if inside:
        out.append(f"[an incomplete result block: {inside - 1} lines]\n")
    return "".join(out)


def fetch_result(backend: Backend, handle: str) -> str:
    """Return the executed notebook (JSON text) that the job printed into its log.

    Raises the core's ``RunError`` (reason ``no-result``) when the log holds no result block.
    """
    from ..execute.result_block import extract_result, extract_result_lines  # lazy: light imports

    streaming = getattr(backend, "result_lines", None)  # never the whole log in memory (L6)
    if streaming is not None:
        return extract_result_lines(streaming(handle))
    reader = getattr(backend, "result_log", None) or backend.logs
    return extract_result(reader(handle))


def cell_progress(log_text: str) -> tuple[int, int] | None:
    """The runner's last ``{"envpack": "cell", "index": i, "total": n}`` line, as (i, n)."""
    for line in reversed(log_text.splitlines()):
        line = line.strip()
        if not (line.startswith("{") and '"envpack"' in line):
            continue
        try:
            data = json.loads(line)
        except ValueError:
            continue
        index, total = data.get("index"), data.get("total")
        if (
            data.get("envpack") == "cell"
            and isinstance(index, int)
            and isinstance(total, int)
            and 0 <= index < total
        ):
            return index, total
    return None


def _report_cells(
    backend: Backend, handle: str, reporter: Reporter, last: tuple[int, int] | None
) -> tuple[int, int] | None:
    try:
        seen = cell_progress(backend.logs(handle, tail=20))
    except Exception:  # progress is a nicety: a log that cannot be read now is no error
        return last
    if seen is not None and seen != last:
        index, total = seen
        reporter(
            ProgressEvent("job", f"running cell {index + 1} of {total}", "progress", index / total)
        )
    return seen or last


def wait_for(
    backend: Backend,
    handle: str,
    *,
    timeout: float,
    poll: float = 2.0,
    reporter: Reporter = null_reporter,
    cancel: CancelToken | None = None,
    pause: Callable[[float], None] | None = None,
) -> JobStatus:
    """Read ``status`` until the job is over or ``timeout`` seconds pass (then raise).

    Between reads it sleeps ``poll`` seconds, or calls ``pause(seconds_left)`` — a backend that
    can *watch* for changes (Kubernetes) blocks there until something happens. While the job
    runs, the runner's cell progress lines in its log become ``progress`` events.
    """
    cancel = cancel or CancelToken()
    end = time.monotonic() + timeout
    last: JobStatus | None = None
    cells: tuple[int, int] | None = None
    while True:
        status = backend.status(handle)
        if status != last:
            reporter(ProgressEvent("job", f"{status.state.value}: {status.message}", "info"))
            last = status
        if status.state is JobState.RUNNING and reporter is not null_reporter:
            cells = _report_cells(backend, handle, reporter, cells)
        if status.terminal:
            return status
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise ClusterError(
                f"job {handle} did not finish within {timeout:g} s",
                hint="it may still be running; check `jupyter envpack jobs`",
            )
        if pause is not None:
            pause(remaining)
            cancel.raise_if_cancelled("waiting for the job")
        elif cancel.wait(min(poll, remaining)):
            cancel.raise_if_cancelled("waiting for the job")


def backend_names() -> list[str]:
    """Return every backend name that can be chosen (the installed entry points)."""
    from ..config import installed_backends

    return sorted(installed_backends())


def backend_class(name: str) -> type[Any]:
    """Return the backend class registered under ``name`` with the built-in configuration."""
    from ..config import EnvPack

    return EnvPack().backend_class(name)


def get_backend(name: str, **options: Any) -> Backend:
    """Instantiate the backend called ``name`` with its own ``options``."""
    backend: Backend = backend_class(name)(**options)
    return backend
