"""Run an envpack image as a Slurm batch job, with the node's container runtime.

One job is one ``sbatch`` script (built by the pure :func:`render_batch_script`): resources as
``#SBATCH`` lines, then a single ``exec`` of the runtime, so ``scancel`` stops the container
itself. The runner prints the executed notebook into the job's output file between markers, the
same transport as Swarm: the output file must be on a filesystem this machine can read (the
usual shared home or scratch of a cluster). Status comes from ``scontrol show job`` while Slurm
remembers the job (``MinJobAge``), then from the ``jobcomp/filetxt`` file; no accounting daemon
(``sacct``) is needed. The handle is Slurm's job id: a restarted server asks again by id.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from ..contract import PARAMETERS_ENV, USER_ID
from ..errors import ClusterError, InputError
from ..events import ProgressEvent, Reporter, null_reporter
from .base import JobSpec, JobState, JobStatus, status_from_exit_code
from .swarm import PIDS_LIMIT

RUNTIMES = ("docker", "podman", "apptainer")
APPTAINER_SOURCES = ("docker://{image}", "docker-daemon:{image}", "oci-archive:{archive}")
RUNTIME_EXIT_CODES = (125, 126, 127)  # docker/podman run's own failures, and "not found"
COMMAND_TIMEOUT = 30.0
LOG_LIMIT = 256 * 1024 * 1024
JOBCOMP_TAIL = 8 * 1024 * 1024
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ID_RE = re.compile(r"^\d+(_\d+)?$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

_PENDING = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING"}
_RUNNING = {"RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT"}
_LOST = {"NODE_FAIL", "BOOT_FAIL", "PREEMPTED", "REVOKED", "SPECIAL_EXIT"}


def _check_name(value: str | None, what: str) -> str | None:
    if value is not None and not _NAME_RE.match(value):
        raise InputError(f"invalid Slurm {what} {value!r}", hint="use letters, digits, _ . -")
    return value


def time_limit(seconds: float) -> str:
    """Slurm's ``--time`` (``D-HH:MM:SS``) for a deadline, rounded up to whole minutes."""
    minutes = max(1, math.ceil(seconds / 60))
    days, rest = divmod(minutes, 24 * 60)
    return f"{days}-{rest // 60:02d}:{rest % 60:02d}:00"


def _container_flags(spec: JobSpec, runtime: str, gpus: int | None) -> list[str]:
    """The locked-down flags of a local rerun (``execute/run.py``), for docker and podman."""
    flags = ["--rm", "--init"]  # no --name: the members of an array may share a node
    flags += [f"--label={k}={v}" for k, v in sorted(spec.all_labels().items())]
    flags += [f"--user={USER_ID}:{USER_ID}", "--cap-drop=ALL"]
    flags += ["--security-opt=no-new-privileges", f"--pids-limit={PIDS_LIMIT}"]
    if spec.memory:
        flags += [f"--memory={spec.memory}", f"--memory-swap={spec.memory}"]
    if spec.cpu:
        flags.append(f"--cpus={spec.cpu:g}")
    if gpus:
        flags.append("--gpus=all" if runtime == "docker" else "--device=nvidia.com/gpu=all")
    flags += [f"--env={k}" for k in sorted(spec.environment())]  # values come from the script
    return flags


def runtime_command(
    spec: JobSpec,
    runtime: str,
    apptainer_source: str = APPTAINER_SOURCES[0],
    gpus: int | None = None,
) -> list[str]:
    """The argv the batch script ``exec``s on the node."""
    if runtime in ("docker", "podman"):
        return [runtime, "run", *_container_flags(spec, runtime, gpus), spec.image, *spec.command()]
    if runtime == "apptainer":
        source = apptainer_source.format(image=spec.image, archive=f"{spec.name}.oci.tar")
        flags = ["--containall", "--cleanenv", "--writable-tmpfs", "--no-home"]
        flags += ["--pwd", "/home/envpack/work", *(["--nv"] if gpus else [])]
        return ["apptainer", "exec", *flags, source, *spec.command()]
    raise InputError(f"unknown Slurm runtime {runtime!r}", hint=f"choose one of {RUNTIMES}")


def render_batch_script(
    spec: JobSpec,
    *,
    output_dir: str,
    runtime: str = "docker",
    partition: str | None = None,
    account: str | None = None,
    gpus: int | None = None,
    apptainer_source: str = APPTAINER_SOURCES[0],
    extra_directives: tuple[str, ...] = (),
    rows: list[str] | None = None,
    max_parallel: int | None = None,
) -> str:
    """Return the ``sbatch`` script of ``spec`` (pure: contacts nothing; ``--dry-run`` shows it).

    With ``rows`` (one parameters cell per sweep member) the script is a job array: task ``i``
    runs with ``rows[i]``, at most ``max_parallel`` at once.
    """
    out = Path(output_dir)
    files = "envpack-%A_%a" if rows else "envpack-%j"
    directives = [
        f"--job-name={spec.name}",
        f"--output={out / (files + '.out')}",
        f"--error={out / (files + '.err')}",
        f"--chdir={out}",
        f"--time={time_limit(spec.deadline)}",
        "--ntasks=1",
        f"--cpus-per-task={max(1, math.ceil(spec.cpu or spec.cpu_request or 1))}",
        "--export=NONE",
        "--no-requeue",
        f"--comment=envpack-job={spec.job_id}",
    ]
    memory = spec.memory or spec.memory_request
    if memory:
        directives.append(f"--mem={math.ceil(memory / 1024**2)}M")
    if partition:
        directives.append(f"--partition={partition}")
    if account:
        directives.append(f"--account={account}")
    if gpus:
        directives.append(f"--gres=gpu:{gpus}")
    if rows:
        directives.append(
            f"--array=0-{len(rows) - 1}" + (f"%{max_parallel}" if max_parallel else "")
        )
    directives += list(extra_directives)
    prefix = "APPTAINERENV_" if runtime == "apptainer" else ""  # passes --cleanenv
    lines = ["#!/bin/bash", *(f"#SBATCH {shlex.quote(d)}" for d in directives)]
    lines += [
        f"# jupyter-envpack job {spec.job_id}",  # never the notebook's name: it may hold a newline
        "set -eu",
        f"export PATH={NODE_PATH}",
        *(f"export {prefix}{k}={shlex.quote(v)}" for k, v in sorted(spec.environment().items())),
        *_array_rows(rows, prefix),
        "exec "
        + shlex.join(runtime_command(_with_env(spec, rows), runtime, apptainer_source, gpus)),
    ]
    return "\n".join(lines) + "\n"


def _array_rows(rows: list[str] | None, prefix: str) -> list[str]:
    """Bash lines that pick this array task's parameters cell by ``SLURM_ARRAY_TASK_ID``."""
    if not rows:
        return []
    return [
        "ROWS=(",
        *(shlex.quote(row) for row in rows),
        ")",
        f'export {prefix}{PARAMETERS_ENV}="${{ROWS[$SLURM_ARRAY_TASK_ID]}}"',
    ]


def _with_env(spec: JobSpec, rows: list[str] | None) -> JobSpec:
    from dataclasses import replace

    return replace(spec, parameters_cell=rows[0]) if rows and not spec.parameters_cell else spec


def task_ids(text: str) -> list[int]:
    """Indexes in Slurm's ``ArrayTaskId`` (``4``, ``0-5%2``, ``1,3-4``)."""
    found: list[int] = []
    for part in text.split("%")[0].split(","):
        low, _, high = part.partition("-")
        if low.isdigit() and (not high or high.isdigit()):
            found += range(int(low), int(high or low) + 1)
    return found


def parse_fields(text: str) -> dict[str, str]:
    """``Key=Value`` pairs of one ``scontrol show job -o`` or jobcomp line (values may hold ``=``)."""
    fields: dict[str, str] = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if sep and key and key[0].isupper():
            fields.setdefault(key, value)
    return fields


def exit_code_of(value: str | None) -> int | None:
    """The shell's exit code from Slurm's ``ExitCode=N:S`` (a signal S becomes 128+S)."""
    if not value or ":" not in value:
        return None
    code, _, signal = value.partition(":")
    if signal.isdigit() and int(signal):
        return 128 + int(signal)
    return int(code) if code.isdigit() else None


def status_from_fields(fields: dict[str, str]) -> JobStatus:
    """Map Slurm's ``JobState`` (+ ``ExitCode``, ``Reason``, ``NodeList``) to a :class:`JobStatus`."""
    state = fields.get("JobState", "").split("+")[0].upper()
    node = fields.get("NodeList") or None
    node = None if node in ("(null)", "None") else node
    reason = fields.get("Reason", "None")
    if state in _PENDING:
        why = "" if reason in ("None", "") else f" ({reason})"
        return JobStatus(JobState.PENDING, "queued", f"waiting in the Slurm queue{why}", None, node)
    if state in _RUNNING:
        return JobStatus(JobState.RUNNING, "running", f"running on {node}", None, node)
    if state == "COMPLETED":
        return status_from_exit_code(0, node)
    if state in ("FAILED", "OUT_OF_MEMORY"):
        code = exit_code_of(fields.get("ExitCode"))
        if state == "OUT_OF_MEMORY":
            code = 137
        if code in RUNTIME_EXIT_CODES:
            message = (
                f"the container runtime on {node or 'the node'} could not start the job "
                f"(exit {code}): its error is in the job's log"
            )
            return JobStatus(JobState.FAILED, "runtime-failed", message, code, node)
        return status_from_exit_code(code, node)
    if state in ("TIMEOUT", "DEADLINE"):
        limit = fields.get("TimeLimit", "?")
        message = f"the job ran longer than its Slurm time limit ({limit})"
        return JobStatus(JobState.FAILED, "deadline-exceeded", message, None, node)
    if state == "CANCELLED":
        return JobStatus(JobState.CANCELLED, "cancelled", "the job was cancelled", None, node)
    if state in _LOST:
        message = f"Slurm ended the job: {state.lower()} on {node or 'its node'}"
        return JobStatus(JobState.LOST, "node-lost", message, None, node)
    return JobStatus(JobState.PENDING, state.lower() or "unknown", f"Slurm state {state}", None)


def _read_tail(path: Path, limit: int) -> str:
    """Up to ``limit`` trailing bytes of ``path``, never through a symlink (job-owned files)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        handle.seek(max(0, size - limit))
        return handle.read(limit).decode("utf-8", errors="replace")


class SlurmBackend:
    """Jobs as Slurm batch scripts submitted with ``sbatch`` on this machine.

    Parameters
    ----------
    runtime
        The node's container runtime: ``docker``, ``podman`` or ``apptainer``.
    partition, account
        ``--partition`` and ``--account`` (default: the cluster's).
    gpus
        GPUs per job (``--gres=gpu:N``, and the runtime's GPU flag).
    output_dir
        Where job output files go; must be shared between this machine and the nodes.
        Default: ``<jupyter data dir>/envpack/slurm``.
    apptainer_source
        Template of Apptainer's image source: ``docker://{image}`` (pull from the registry),
        ``docker-daemon:{image}`` or ``oci-archive:/shared/{archive}``.
    jobcomp_file
        The ``jobcomp/filetxt`` file (default: ``JobCompLoc`` from ``scontrol show config``).
    extra_directives
        More ``#SBATCH`` options, e.g. ``["--qos=short"]``.
    """

    name = "slurm"

    def __init__(
        self,
        runtime: str = "docker",
        partition: str | None = None,
        account: str | None = None,
        gpus: int | None = None,
        output_dir: str | None = None,
        apptainer_source: str = APPTAINER_SOURCES[0],
        jobcomp_file: str | None = None,
        extra_directives: tuple[str, ...] | list[str] = (),
        **_ignored: Any,
    ) -> None:
        if runtime not in RUNTIMES:
            raise InputError(f"unknown Slurm runtime {runtime!r}", hint=f"choose one of {RUNTIMES}")
        if gpus is not None and (isinstance(gpus, bool) or int(gpus) < 0):
            raise InputError(f"gpus must be a count, not {gpus!r}")
        self.runtime = runtime
        self.partition = _check_name(partition, "partition")
        self.account = _check_name(account, "account")
        self.gpus = int(gpus) if gpus else None
        self.output_dir = Path(output_dir) if output_dir else _default_output_dir()
        self.apptainer_source = apptainer_source
        self.jobcomp_file = jobcomp_file
        self.extra_directives = tuple(extra_directives)

    def render_script(
        self, spec: JobSpec, rows: list[str] | None = None, max_parallel: int | None = None
    ) -> str:
        """The batch script :meth:`submit` (or, with ``rows``, :meth:`submit_sweep`) sends."""
        return render_batch_script(
            spec,
            output_dir=str(self.output_dir),
            runtime=self.runtime,
            partition=self.partition,
            account=self.account,
            gpus=self.gpus,
            apptainer_source=self.apptainer_source,
            extra_directives=self.extra_directives,
            rows=rows,
            max_parallel=max_parallel,
        )

    def _sbatch(self, script: str) -> str:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        done = self._run(["sbatch", "--parsable"], stdin=script)
        handle = done.stdout.strip().split(";")[0]
        if done.returncode != 0 or not _ID_RE.match(handle):
            raise ClusterError(
                f"sbatch refused the job: {done.stderr.strip()[:300] or done.stdout[:300]}",
                hint="check the partition, account, time limit, resources and MaxArraySize",
            )
        return handle

    def render(self, spec: JobSpec) -> list[dict[str, Any]]:
        """Return the batch script as one document (``--dry-run``)."""
        return [{"kind": "SlurmBatchScript", "name": spec.name, "script": self.render_script(spec)}]

    def _run(self, argv: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        if shutil.which(argv[0]) is None:
            raise ClusterError(
                f"{argv[0]} is not installed here",
                hint="run the server on a Slurm login node (or install slurm-client)",
            )
        try:
            return subprocess.run(
                argv, input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            raise ClusterError(
                f"{argv[0]} did not answer within {COMMAND_TIMEOUT:g} s",
                hint="is slurmctld up? try `sinfo`",
            ) from None

    def check(self) -> None:
        """Raise unless ``sbatch`` is here and the controller answers (for the UI's list)."""
        done = self._run(["sinfo", "-h", "-o", "%P"])
        if done.returncode != 0:
            raise ClusterError(
                f"the Slurm controller does not answer: {done.stderr.strip()[:200]}",
                hint="check slurmctld and munge (`sinfo`)",
            )

    def _find(self, name: str) -> str | None:
        done = self._run(["squeue", "-h", "-r", "-t", "all", "-n", name, "-o", "%i"])
        found = done.stdout.split() if done.returncode == 0 else []
        return found[0] if found else None

    def submit(self, spec: JobSpec, reporter: Reporter = null_reporter) -> str:
        """``sbatch --parsable`` the script (or attach to the job already named ``spec.name``)."""
        existing = self._find(spec.name)
        if existing is not None:
            reporter(ProgressEvent("job", f"attached to Slurm job {existing}", "info"))
            return existing
        handle = self._sbatch(self.render_script(spec))
        reporter(ProgressEvent("job", f"submitted Slurm job {handle} ({spec.name})", "step"))
        return handle

    def submit_sweep(
        self,
        spec: JobSpec,
        rows: list[str],
        max_parallel: int | None = None,
        reporter: Reporter = null_reporter,
    ) -> str:
        """Submit one job array, task ``i`` with parameters cell ``rows[i]``; return its id."""
        handle = self._sbatch(self.render_script(spec, rows, max_parallel))
        reporter(ProgressEvent("job", f"submitted Slurm job array {handle} ({len(rows)})", "step"))
        return handle

    def members(self, handle: str) -> dict[int, dict[str, str]]:
        """``scontrol`` fields of every task of job array ``handle`` Slurm still knows, by index."""
        done = self._run(["scontrol", "show", "job", "-o", self._valid(handle)])
        found: dict[int, dict[str, str]] = {}
        for line in done.stdout.splitlines() if done.returncode == 0 else []:
            fields = parse_fields(line)
            for index in task_ids(fields.get("ArrayTaskId", "")):
                found[index] = fields
        return found

    def _valid(self, handle: str) -> str:
        if not _ID_RE.match(handle):
            raise InputError(f"{handle!r} is not a Slurm job id")
        return handle

    def status(self, handle: str) -> JobStatus:
        """From ``scontrol show job``; once Slurm forgot the job, from the jobcomp file."""
        done = self._run(["scontrol", "show", "job", "-o", self._valid(handle)])
        if done.returncode == 0 and "JobState=" in done.stdout:
            return status_from_fields(parse_fields(done.stdout.splitlines()[0]))
        fields = self._jobcomp(handle)
        if fields is not None:
            return status_from_fields(fields)
        return JobStatus(
            JobState.LOST,
            "job-gone",
            f"Slurm knows no job {handle} (not queued, not in the jobcomp file)",
        )

    def _jobcomp_path(self) -> Path | None:
        if self.jobcomp_file is None:
            done = self._run(["scontrol", "show", "config"])
            for line in done.stdout.splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "JobCompLoc":
                    self.jobcomp_file = value.strip()
        return Path(self.jobcomp_file) if self.jobcomp_file else None

    def _jobcomp(self, handle: str) -> dict[str, str] | None:
        path = self._jobcomp_path()
        try:
            text = _read_tail(path, JOBCOMP_TAIL) if path else ""
        except OSError:
            return None
        for line in reversed(text.splitlines()):
            if line.startswith(f"JobId={handle} "):
                return parse_fields(line)
        return None

    def _output(self, handle: str, stream: str) -> str:
        path = self.output_dir / f"envpack-{self._valid(handle)}.{stream}"
        try:
            return _read_tail(path, LOG_LIMIT)
        except FileNotFoundError:
            return ""
        except OSError as exc:
            raise ClusterError(f"cannot read {path}: {exc.strerror}") from None

    def result_log(self, handle: str) -> str:
        """The job's stdout file alone (the result block is never mixed with stderr)."""
        return self._output(handle, "out")

    def logs(self, handle: str, tail: int | None = None) -> str:
        """The job's stdout file followed by its stderr file."""
        text = self._output(handle, "out") + self._output(handle, "err")
        if tail is not None:
            text = "".join(text.splitlines(keepends=True)[-int(tail) :])
        return text

    def cancel(self, handle: str) -> None:
        """``scancel`` the job (the runtime was ``exec``'d, so its container stops too)."""
        self._run(["scancel", self._valid(handle)])


def _default_output_dir() -> Path:
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "envpack" / "slurm"
