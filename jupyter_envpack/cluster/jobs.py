"""Cluster jobs end to end: build → push → submit → follow → fetch, plus a small local index.

The index (SQLite under the Jupyter data dir, ``ENVPACK_JOBS_DB`` overrides) is what lets
``jupyter envpack jobs`` / ``logs ID`` / ``cancel ID`` / ``fetch ID`` work across invocations. It
stores the *intent* (backend, handle, notebook, image, options without secrets), written before
the backend is contacted; the backend stays the source of truth for *reality*: every status read
asks it, and a state only moves from non-final to final once (compare-and-set).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..defaults import CELL_TIMEOUT, RUN_DEADLINE
from ..errors import CancelledError, ClusterError, ConflictError, InputError, NotFoundError
from ..events import CancelToken, ProgressEvent, Reporter, null_reporter
from ..gpu import gpu_count
from .base import Backend, JobSpec, JobState, JobStatus, fetch_result, get_backend
from .k8s_manifests import (
    CRONJOB_NAME_MAX,
    JOB_NAME_MAX,
    job_name,
    validate_schedule,
    validate_timezone,
)
from .registry import RegistryAuth, push_image, target_reference, validate_registry

if TYPE_CHECKING:
    from ..config import EnvPack
    from ..image import BuildOptions
    from ..pipeline import Prepared

DB_ENV = "ENVPACK_JOBS_DB"
_OPEN_STATES = (JobState.QUEUED.value, JobState.RUNNING.value)
#: The job index's own words of earlier versions, read once as ``queued`` (one vocabulary).
_LEGACY_STATES = "UPDATE jobs SET state='queued' WHERE state IN ('submitting', 'pending')"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, backend TEXT NOT NULL, handle TEXT, options TEXT NOT NULL,
    notebook TEXT NOT NULL, image TEXT NOT NULL, output TEXT, state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '', message TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL, updated REAL NOT NULL);
"""


def default_db_path() -> Path:
    """``$ENVPACK_JOBS_DB``, else ``<jupyter data dir>/envpack/cluster-jobs.sqlite``."""
    if os.environ.get(DB_ENV):
        return Path(os.environ[DB_ENV])
    from jupyter_core.paths import jupyter_data_dir

    return Path(jupyter_data_dir()) / "envpack" / "cluster-jobs.sqlite"


@dataclass
class JobRecord:
    """One submitted job as the index remembers it (never a secret in here)."""

    id: str
    backend: str
    notebook: str
    image: str
    options: dict[str, Any] = field(default_factory=dict)
    handle: str | None = None
    output: str | None = None
    state: str = JobState.QUEUED.value
    reason: str = ""
    message: str = ""
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)

    @property
    def finished(self) -> bool:
        """Whether the job reached a final state."""
        return self.state not in _OPEN_STATES

    def to_json(self) -> dict[str, Any]:
        """Return the record as a JSON-ready dict."""
        return asdict(self)


class JobIndex:
    """The local index of submitted jobs (SQLite, one short transaction per call)."""

    def __init__(self, path: str | Path | None = None) -> None:
        from ..safefs import private_dir, private_file

        self.path = Path(path) if path else default_db_path()
        private_dir(self.path.parent)
        private_file(self.path)  # 0600 from creation, before SQLite opens it (L8)
        with self._db() as db:
            db.executescript(_SCHEMA)
            db.execute(_LEGACY_STATES)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=5.0)
        try:
            with db:
                yield db
        finally:
            db.close()

    def add(self, record: JobRecord) -> JobRecord:
        """Insert ``record`` (before the backend is contacted)."""
        with self._db() as db:
            db.execute(
                "INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    record.id,
                    record.backend,
                    record.handle,
                    json.dumps(record.options),
                    record.notebook,
                    record.image,
                    record.output,
                    record.state,
                    record.reason,
                    record.message,
                    record.created,
                    record.updated,
                ),
            )
        return record

    def set_handle(self, job_id: str, handle: str) -> None:
        """Remember the backend's handle of ``job_id``."""
        with self._db() as db:
            db.execute(
                "UPDATE jobs SET handle=?, updated=? WHERE id=?", (handle, time.time(), job_id)
            )

    def record_status(self, job_id: str, status: JobStatus) -> bool:
        """Store ``status`` unless the job is already final; True when the row changed."""
        marks = ",".join("?" * len(_OPEN_STATES))
        with self._db() as db:
            cur = db.execute(
                f"UPDATE jobs SET state=?, reason=?, message=?, updated=? "  # noqa: S608 - marks only
                f"WHERE id=? AND state IN ({marks})",
                (
                    status.state.value,
                    status.reason,
                    status.message,
                    time.time(),
                    job_id,
                    *_OPEN_STATES,
                ),
            )
        return cur.rowcount == 1

    def mark(self, job_id: str, state: str, reason: str, message: str) -> bool:
        """Force a final ``state`` on an open job (cancelled, submit failed)."""
        return self.record_status(job_id, JobStatus(JobState(state), reason, message))

    def get(self, ref: str) -> JobRecord:
        """Return the job whose id is ``ref`` or starts with it (unique prefix)."""
        if not ref or not all(c in "0123456789abcdef" for c in ref):
            raise InputError(f"invalid job id {ref!r}", hint="see `jupyter envpack jobs`")
        with self._db() as db:
            rows = db.execute(
                "SELECT * FROM jobs WHERE id LIKE ? ORDER BY created", (ref + "%",)
            ).fetchall()
        if not rows:
            raise NotFoundError(f"no job {ref}", hint="see `jupyter envpack jobs`")
        if len(rows) > 1:
            raise InputError(f"job id {ref} is ambiguous", hint="type more of it")
        return _record(rows[0])

    def list(self, limit: int = 50) -> list[JobRecord]:
        """Return the newest ``limit`` jobs, newest first."""
        with self._db() as db:
            rows = db.execute(
                "SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (int(limit),)
            ).fetchall()
        return [_record(r) for r in rows]


def _record(row: tuple[Any, ...]) -> JobRecord:
    (
        id_,
        backend,
        handle,
        options,
        notebook,
        image,
        output,
        state,
        reason,
        message,
        created,
        updated,
    ) = row
    return JobRecord(
        id=id_,
        backend=backend,
        handle=handle,
        options=json.loads(options),
        notebook=notebook,
        image=image,
        output=output,
        state=state,
        reason=reason,
        message=message,
        created=created,
        updated=updated,
    )


@dataclass(frozen=True)
class SubmitOptions:
    """What the user chose for one job (CLI flags, server options)."""

    backend: str = "swarm"
    registry: str | None = None
    registry_auth: RegistryAuth | None = field(default=None, repr=False)
    parameters: Mapping[str, Any] = field(default_factory=dict)
    cell_timeout: float | None = CELL_TIMEOUT
    deadline: float = RUN_DEADLINE
    cpu: float | None = None
    memory: str | int | None = None
    cpu_request: float | None = None
    memory_request: str | int | None = None
    constraints: tuple[str, ...] = ()
    schedule: str | None = None
    timezone: str | None = None
    namespace: str | None = None
    kube_context: str | None = None
    kubeconfig: str | None = None
    image_pull_secrets: tuple[str, ...] = ()
    partition: str | None = None
    account: str | None = None
    gpus: int | str | None = None  # a count (``c.EnvPack.gpus`` is text); see ..gpu.gpu_count
    runtime: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    output: str | None = None

    def backend_options(self) -> dict[str, Any]:
        """Constructor options of the backend (stored in the index: no secrets here)."""
        if self.backend == "kubernetes":
            return {
                k: v
                for k, v in {
                    "namespace": self.namespace,
                    "context": self.kube_context,
                    "kubeconfig": self.kubeconfig,
                    "image_pull_secrets": list(self.image_pull_secrets),
                }.items()
                if v
            }
        if self.backend == "swarm":
            return {"constraints": list(self.constraints)} if self.constraints else {}
        if self.backend == "slurm":
            chosen = {
                "partition": self.partition,
                "account": self.account,
                "gpus": gpu_count(self.gpus),
                "runtime": self.runtime,
            }
            return {k: v for k, v in chosen.items() if v}
        return {}

    def validate(self) -> SubmitOptions:
        """Raise :class:`InputError` for options no backend could use."""
        if self.registry:
            validate_registry(self.registry)
        if self.timezone:
            if not self.schedule:
                raise InputError("--timezone goes with --schedule")
            validate_timezone(self.timezone)
        if self.schedule:
            validate_schedule(self.schedule)
            if self.backend != "kubernetes":
                raise InputError(
                    "--schedule needs the kubernetes backend",
                    hint="Swarm has no cron jobs; use --backend kubernetes",
                )
        gpu_count(self.gpus)  # clusters schedule a number of GPUs, never "all"
        if self.deadline <= 0 or (self.cell_timeout is not None and self.cell_timeout <= 0):
            raise InputError("timeouts must be positive")
        for name, cores in (("--cpu", self.cpu), ("--cpu-request", self.cpu_request)):
            if cores is not None and cores <= 0:
                raise InputError(f"{name} must be positive")
        limit, request = memory_size(self.memory), memory_size(self.memory_request)
        if limit and request and request > limit:
            raise InputError("--memory-request is larger than --memory")
        if self.cpu and self.cpu_request and self.cpu_request > self.cpu:
            raise InputError("--cpu-request is larger than --cpu")
        return self


def memory_size(value: str | int | None) -> int | None:
    """Bytes of a job's ``--memory``/``--memory-request`` (``None`` or ``""``: not set)."""
    from ..execute.limits import parse_memory  # lazy: ``execute`` loads the Docker runner

    return None if value is None or value == "" else parse_memory(value, minimum=1)


def new_job_id() -> str:
    """A fresh 12-hex job id (short enough to type, a valid label value everywhere)."""
    return uuid.uuid4().hex[:12]


def default_config() -> EnvPack:
    """The ``EnvPack`` configuration from the Jupyter config files."""
    from ..config import load_envpack_config

    return load_envpack_config()


def open_backend(
    name: str, options: Mapping[str, Any] | None = None, config: Any = None, client: Any = None
) -> Backend:
    """Instantiate backend ``name`` as ``config.cluster_backends`` registers it."""
    if config is None:
        config = default_config()
    defaults = (getattr(config, "backend_options", None) or {}).get(name) or {}
    kwargs = {**defaults, **(options or {})}
    if client is not None and name == "swarm":
        kwargs["client"] = client
    if config is None:
        return get_backend(name, **kwargs)
    backend: Backend = config.backend_class(name)(**kwargs)
    return backend


def backend_availability(config: Any = None, client: Any = None) -> dict[str, dict[str, Any]]:
    """For each known backend: can jobs be submitted from here, and if not, why (RELIABILITY I1).

    Cheap and local: Swarm asks the Docker engine (``docker info``), Kubernetes looks for a
    kubeconfig or in-cluster config without contacting the API server. Surfaces use it to hide or
    disable backends that cannot work.
    """
    from ..errors import EnvpackError
    from .base import backend_names

    config = config if config is not None else default_config()
    names = set(config.backend_registry()) if config is not None else set(backend_names())
    found: dict[str, dict[str, Any]] = {}
    for name in sorted(names):
        try:
            backend = open_backend(name, {}, config, client)
            check = getattr(backend, "check", None)
            if check is not None:
                check()
            found[name] = {"available": True}
        except EnvpackError as exc:
            found[name] = {"available": False, "reason": exc.message, "hint": exc.hint}
        except Exception as exc:  # a misconfigured plug-in must not break the whole list
            found[name] = {
                "available": False,
                "reason": f"{type(exc).__name__}: {exc}",
                "hint": "check c.EnvPack.cluster_backends",
            }
    return found


def image_for(
    notebook: str,
    *,
    build: BuildOptions | None = None,
    python: str | None = None,
    kernel: str | None = None,
    reporter: Reporter = null_reporter,
    cancel: CancelToken | None = None,
    dry_run: bool = False,
    prepared: Prepared | None = None,
) -> str:
    """Return the notebook's local image: built (cached by content), or only named on a dry run.

    ``prepared``: the notebook's snapshot taken already (the magics probe their own kernel).
    """
    from .. import pipeline

    if prepared is None:
        prepared = pipeline.prepare(  # the files summary is shown before any push
            notebook, build, python=python, kernel=kernel, use_lock=False, reporter=reporter,
            cancel=cancel,
        )  # fmt: skip
    if dry_run:
        return pipeline.image_name(prepared)
    return pipeline.build(prepared, reporter, cancel).image


def make_job_spec(job_id: str, notebook: str, image: str, opts: SubmitOptions) -> JobSpec:
    """Return the backend-neutral :class:`JobSpec` for one submission."""
    from ..execute.parameters import parameters_cell_source

    limit = CRONJOB_NAME_MAX if opts.schedule else JOB_NAME_MAX
    return JobSpec(
        job_id=job_id,
        name=job_name(notebook, job_id, max_length=limit),
        image=image,
        notebook=Path(notebook).name,
        parameters_cell=parameters_cell_source(dict(opts.parameters)) if opts.parameters else None,
        cell_timeout=opts.cell_timeout,
        deadline=opts.deadline,
        cpu=opts.cpu,
        memory=memory_size(opts.memory),
        cpu_request=opts.cpu_request,
        memory_request=memory_size(opts.memory_request),
        labels=dict(opts.labels),
        constraints=tuple(opts.constraints),
        schedule=opts.schedule,
        timezone=opts.timezone,
        gpus=gpu_count(opts.gpus),
    )


@dataclass
class Submitted:
    """What :func:`submit` did: the index record, and on a dry run the would-be objects."""

    record: JobRecord
    manifests: list[dict[str, Any]] = field(default_factory=list)
    status: JobStatus | None = None
    output_path: Path | None = None


def pushed_reference(
    image: str,
    opts: SubmitOptions,
    *,
    client: Any = None,
    reporter: Reporter = null_reporter,
    cancel: CancelToken | None = None,
    dry_run: bool = False,
) -> str:
    """Push ``image`` to ``opts.registry`` and return the reference clusters pull."""
    if not opts.registry:
        reporter(
            ProgressEvent(
                "push",
                "no --registry: the job uses the local image, which only this engine's node has",
                "warning",
            )
        )
        return image
    if image.startswith(validate_registry(opts.registry) + "/"):
        return image  # already a reference in that registry (pushed earlier)
    if dry_run:
        repository, tag = target_reference(image, opts.registry)
        return f"{repository}:{tag}"
    return push_image(
        image,
        opts.registry,
        auth=opts.registry_auth,
        client=client,
        reporter=reporter,
        cancel=cancel,
    ).reference


def submit(
    notebook: str,
    opts: SubmitOptions,
    *,
    image: str | None = None,
    build: BuildOptions | None = None,
    python: str | None = None,
    kernel: str | None = None,
    reporter: Reporter = null_reporter,
    cancel: CancelToken | None = None,
    index: JobIndex | None = None,
    dry_run: bool = False,
    wait: bool = False,
    config: Any = None,
    client: Any = None,
    job_id: str | None = None,
    on_record: Callable[[JobRecord], None] | None = None,
    output: Path | None = None,
    prepared: Prepared | None = None,
) -> Submitted:
    """Build (or reuse ``image``), push, and start ``notebook`` as a cluster job.

    The image comes from the pipeline (:func:`image_for`; ``prepared`` when the caller took the
    snapshot already).

    With ``dry_run`` nothing is built, pushed or contacted: the result carries the manifests (or
    Swarm service spec) that would be sent. With ``wait`` the job is followed to its end and the
    executed notebook is written to ``output`` / ``opts.output`` (default ``<stem>.envpack.ipynb``
    beside it). ``on_record`` is called with the record before the cluster is contacted and again
    once the handle is known (the server persists both in its operation).
    """
    opts.validate()
    if wait and opts.schedule:
        raise InputError("--wait does not apply to --schedule: a CronJob never finishes")
    secrets = (
        {"registry_auth": opts.registry_auth}  # Swarm nodes pull with it; never stored
        if opts.registry_auth and opts.backend == "swarm"
        else {}
    )
    backend = open_backend(opts.backend, {**opts.backend_options(), **secrets}, config, client)
    check = getattr(backend, "check", None)
    if check is not None and not dry_run:
        check()  # no swarm, no kubeconfig: say so before a long build (RELIABILITY I1)
    local = image or image_for(
        notebook,
        build=build,
        python=python,
        kernel=kernel,
        reporter=reporter,
        cancel=cancel,
        dry_run=dry_run,
        prepared=prepared,
    )
    reference = pushed_reference(
        local, opts, client=client, reporter=reporter, cancel=cancel, dry_run=dry_run
    )
    job_id = job_id or new_job_id()
    spec = make_job_spec(job_id, notebook, reference, opts)
    record = JobRecord(
        id=job_id,
        backend=opts.backend,
        notebook=str(notebook),
        image=reference,
        options={
            "backend": opts.backend_options(),
            "schedule": opts.schedule,
            "deadline": opts.deadline,
        },
        output=opts.output,
    )
    if dry_run:
        return Submitted(record, backend.render(spec))
    index = index or JobIndex()
    index.add(record)  # intent first: a crash after this line leaves a findable row
    if on_record:
        on_record(record)
    try:
        handle = backend.submit(spec, reporter)
    except Exception as exc:
        index.mark(job_id, "failed", "submit-failed", getattr(exc, "message", str(exc))[:500])
        raise
    index.set_handle(job_id, handle)
    record.handle = handle
    if on_record:
        on_record(record)
    reporter(ProgressEvent("job", f"submitted job {job_id} ({opts.backend} {handle})", "info"))
    done = Submitted(record)
    if wait:
        done.status, done.output_path = follow(
            record,
            index=index,
            reporter=reporter,
            cancel=cancel,
            config=config,
            client=client,
            output=output,
        )
    return done


def backend_of(record: JobRecord, config: Any = None, client: Any = None) -> Backend:
    """The backend a record was submitted to, configured as it was."""
    return open_backend(record.backend, record.options.get("backend") or {}, config, client)


def _handle(record: JobRecord) -> str:
    if not record.handle:
        raise ClusterError(f"job {record.id} never reached the cluster ({record.message})")
    return record.handle


def refresh(record: JobRecord, index: JobIndex, backend: Backend | None = None) -> JobRecord:
    """Ask the backend for the job's status and store it (final states are kept)."""
    if record.finished:
        return record
    if record.options.get("sweep"):  # a sweep's state sums up its members' (see .sweeps)
        from .sweeps import refresh_sweep

        refresh_sweep(record, index, backend or backend_of(record))
        return index.get(record.id)
    status = (backend or backend_of(record)).status(_handle(record))
    index.record_status(record.id, status)
    return index.get(record.id)


def follow(
    record: JobRecord,
    *,
    index: JobIndex,
    reporter: Reporter = null_reporter,
    cancel: CancelToken | None = None,
    timeout: float | None = None,
    poll: float = 2.0,
    config: Any = None,
    client: Any = None,
    output: Path | None = None,
) -> tuple[JobStatus, Path | None]:
    """Follow a job to its end, store the final status, fetch the notebook when it produced one."""
    from .base import wait_for

    backend = backend_of(record, config, client)
    handle = _handle(record)
    # the deadline counts from the start; allow for scheduling and the image pull before it
    limit = timeout if timeout is not None else float(record.options.get("deadline") or 86400) + 600
    waiter = getattr(backend, "wait", None)
    try:
        if waiter is not None:
            status = waiter(handle, timeout=limit, reporter=reporter, cancel=cancel)
        else:
            status = wait_for(
                backend, handle, timeout=limit, poll=poll, reporter=reporter, cancel=cancel
            )
    except CancelledError:
        backend.cancel(handle)  # the user stopped waiting *and* the job
        index.mark(record.id, "cancelled", "cancelled", "cancelled by the user")
        raise
    index.record_status(record.id, status)
    path = None
    if status.state in (JobState.SUCCEEDED, JobState.FAILED) and status.exit_code is not None:
        try:
            path = fetch(record, index=index, output=output, backend=backend)
        except ClusterError:
            if status.state is JobState.SUCCEEDED:
                raise
        else:
            reporter(ProgressEvent("job", f"executed notebook written to {path}", "info"))
    if status.state is not JobState.SUCCEEDED:
        _report_log_tail(backend, handle, reporter)
    if status.reason == "deadline-exceeded":
        backend.cancel(handle)  # Swarm has no deadline of its own: stop the task now
    return status, path


def _report_log_tail(backend: Backend, handle: str, reporter: Reporter, lines: int = 40) -> None:
    """Put the end of a failed job's log into the event stream (the runner's traceback...)."""
    from .base import collapse_result

    try:
        text = collapse_result(backend.logs(handle, tail=lines))
    except Exception:  # the log may be gone with the node or the job: the status says enough
        return
    for line in text.splitlines()[-lines:]:
        reporter(ProgressEvent("job", line[:2000], "log"))


def default_output_path(record: JobRecord) -> Path:
    """``<stem>.envpack.ipynb`` beside the submitted notebook (or the recorded output)."""
    if record.output:
        return Path(record.output)
    nb = Path(record.notebook)
    return nb.with_name(f"{nb.stem}.envpack.ipynb")


def fetch(
    record: JobRecord,
    *,
    index: JobIndex | None = None,
    output: Path | None = None,
    backend: Backend | None = None,
) -> Path:
    """Write the executed notebook the job printed into its log; return where."""
    from ..errors import RunError

    backend = backend or backend_of(record)
    try:
        text = fetch_result(backend, _handle(record))
    except RunError as exc:
        raise ClusterError(
            f"job {record.id}: {exc.message}",
            hint="the job may have failed before the end; see its logs",
        ) from None
    from ..errors import NotebookError
    from ..safefs import safe_write
    from ..snapshot.notebook import parse_notebook

    try:  # a result that is not a notebook is never written into the user's folder
        parse_notebook(text.encode("utf-8"), name=f"the result of job {record.id}")
    except NotebookError as exc:
        raise ClusterError(exc.message, hint="the job's image or runner is not envpack's") from None
    path = output or default_output_path(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    safe_write(path, text)
    return path


def logs(record: JobRecord, tail: int | None = None, raw: bool = False) -> str:
    """Return the job's log text (the result block shown as one line unless ``raw``)."""
    from .base import collapse_result

    text = backend_of(record).logs(_handle(record), tail=tail)
    return text if raw else collapse_result(text)


def cancel(record: JobRecord, index: JobIndex) -> JobRecord:
    """Stop the job and remove its cluster objects; a finished job is a conflict (409)."""
    if record.finished:
        raise ConflictError(f"job {record.id} is already {record.state}")
    if record.handle:
        backend_of(record).cancel(record.handle)
    index.mark(record.id, "cancelled", "cancelled", "cancelled by the user")
    return index.get(record.id)
