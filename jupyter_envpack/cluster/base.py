"""The one job-backend interface, the job description it takes and the status it answers.

A backend (Docker Swarm, Kubernetes, or a third-party one) runs an envpack image that has already
been pushed to a registry the cluster can pull from. The image's runner prints the executed
notebook into the job's log between markers (see ``docs/core-api.md``), so every backend gets the
result back the same way: read the logs, decode the block.

Backends are found by name through the entry-point group ``jupyter_envpack.backends``; the two
built-in names also resolve when the package is not installed (running from a checkout).
"""

from __future__ import annotations

import enum
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from ..defaults import RUN_DEADLINE
from ..errors import ClusterError, InputError
from ..events import CancelToken, ProgressEvent, Reporter, null_reporter

ENTRY_POINT_GROUP = "jupyter_envpack.backends"
BUILTIN_BACKENDS = {
    "swarm": "jupyter_envpack.cluster.swarm:SwarmBackend",
    "kubernetes": "jupyter_envpack.cluster.kubernetes:KubernetesBackend",
    "slurm": "jupyter_envpack.cluster.slurm:SlurmBackend",
}
LABEL = "org.jupyter.envpack"
RUNNER_PYTHON = "/opt/envpack/runner/bin/python"
RUNNER_SCRIPT = "/opt/envpack/run_notebook.py"
IMAGE_USER = 1000
PARAMETERS_ENV = "ENVPACK_PARAMETERS_CELL"

# What the runner's exit code means (docs/core-api.md), as stable reason slugs.
EXIT_REASONS = {
    0: "completed",
    2: "bad-input",
    3: "cell-error",
    4: "cell-timeout",
    5: "kernel-died",
    6: "kernel-start",
    137: "killed-or-oom",
}
NOTEBOOK_EXIT_CODES = (2, 3, 4, 5, 6)

_MEMORY_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "m": 1000**2,
    "g": 1000**3,
    "t": 1000**4,
    "ki": 1024,
    "mi": 1024**2,
    "gi": 1024**3,
    "ti": 1024**4,
}
_MEMORY_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]i?|b)?", re.IGNORECASE)


def parse_memory(value: str | int | None) -> int | None:
    """Return a memory size in bytes from ``512m``, ``1Gi``, ``2g`` or a plain integer.

    Docker's suffixes (``k``, ``m``, ``g``) are read as binary units like ``docker run -m`` does;
    Kubernetes' ``Ki``/``Mi``/``Gi`` are binary too. ``None`` stays ``None``.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InputError("memory must be a size such as 2g, not a boolean")
    if isinstance(value, int):
        if value <= 0:
            raise InputError(f"memory must be positive, not {value}")
        return value
    match = _MEMORY_RE.fullmatch(value.strip())
    if not match:
        raise InputError(f"cannot read memory size {value!r}", hint="use e.g. 512m, 2g or 1Gi")
    number, unit = float(match.group(1)), (match.group(2) or "").lower()
    factor = _MEMORY_UNITS[unit + "i" if unit in {"k", "m", "g", "t"} else unit]
    size = int(number * factor)
    if size <= 0:
        raise InputError(f"memory must be positive, not {value!r}")
    return size


class JobState(str, enum.Enum):
    """Where a job is in its life; the last four are final."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"

    @property
    def terminal(self) -> bool:
        """Whether the job can no longer change state."""
        return self not in (JobState.PENDING, JobState.RUNNING)


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
        env = {"HOME": "/home/envpack"}
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


RESULT_BEGIN = "----- ENVPACK RESULT BEGIN -----"
RESULT_END = "----- ENVPACK RESULT END -----"


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
    from ..execute.runner import extract_result, extract_result_lines  # lazy: light imports

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
    """Return every backend name that can be chosen (built-in and installed plug-ins)."""
    names = set(BUILTIN_BACKENDS)
    names.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def backend_class(name: str) -> type[Any]:
    """Return the backend class registered under ``name`` (entry point first, then built-in)."""
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            loaded: type[Any] = ep.load()
            return loaded
    target = BUILTIN_BACKENDS.get(name)
    if target is None:
        raise InputError(
            f"unknown cluster backend {name!r}", hint=f"choose one of: {', '.join(backend_names())}"
        )
    module, _, attr = target.partition(":")
    cls: type[Any] = getattr(import_module(module), attr)
    return cls


def get_backend(name: str, **options: Any) -> Backend:
    """Instantiate the backend called ``name`` with its own ``options``."""
    backend: Backend = backend_class(name)(**options)
    return backend
