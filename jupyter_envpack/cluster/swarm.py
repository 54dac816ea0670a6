"""Run an envpack image as a Docker Swarm job (a ``replicated-job`` service).

One job is one service with one task and restart condition ``none``: the notebook runs once, on
whichever node the constraints allow, pulling the image from a registry every node can reach. The
task's state gives the job's status, and the service's log stream carries the executed notebook
back (the runner prints it, gzip + base64, between markers), so no shared volume is needed across
nodes. A task whose node is drained, stopped or lost is reported ``lost`` at once, never left
``running`` (Swarm itself only marks such tasks orphaned after 24 hours).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import deque
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from ..contract import HOME, LABEL, USER_ID
from ..errors import ClusterError, EngineError
from ..events import ProgressEvent, Reporter, null_reporter
from ..execute.limits import DEFAULT_CPUS, DEFAULT_MEMORY, DEFAULT_TMP_SIZE, parse_memory
from .base import JobSpec, JobState, JobStatus, status_from_exit_code

DEADLINE_LABEL = f"{LABEL}.deadline"
PIDS_LIMIT = 1024
GPU_KIND = "NVIDIA-GPU"  # the generic resource nodes advertise (dockerd node-generic-resources)
LOG_OPTIONS = {"max-size": "256m", "max-file": "2"}  # the log carries the result: keep it whole
MAX_LOG_BYTES = 600 * 2**20  # what the engine may keep of a log (2 x 256m), read as a stream
MAX_SHOWN_LINES = 20_000  # `jupyter envpack logs ID` shows the newest lines
_PENDING_STATES = {
    "new",
    "allocated",
    "pending",
    "assigned",
    "accepted",
    "preparing",
    "ready",
    "starting",
}
_PULL_WORDS = (
    "no such image",
    "pull access denied",
    "manifest unknown",
    "unauthorized",
    "repository does not exist",
    "failed to resolve reference",
    "error pulling image",
)


def _nano_cpus(cores: float | None) -> int | None:
    return None if cores is None else int(cores * 1e9)


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    text = text.rstrip("Z")
    head, _, frac = text.partition(".")
    stamp = datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    return stamp.timestamp() + (float("0." + frac[:6]) if frac.isdigit() else 0.0)


def make_service_spec(spec: JobSpec) -> dict[str, Any]:
    """Return the Swarm service create body (``Name``, ``Labels``, ``TaskTemplate``, ``Mode``).

    Pure: builds docker-py's typed dicts, contacts nothing; ``--dry-run`` prints this.
    """
    from docker.types import (
        ContainerSpec,
        Mount,
        Placement,
        Resources,
        RestartPolicy,
        ServiceMode,
        TaskTemplate,
    )

    labels = {**spec.all_labels(), DEADLINE_LABEL: f"{spec.deadline:g}"}
    container = ContainerSpec(
        spec.image,
        command=spec.command(),
        env=spec.environment(),
        user=f"{USER_ID}:{USER_ID}",
        labels=labels,
        cap_drop=["ALL"],
        stop_grace_period=10 * 10**9,
        init=True,
        read_only=True,
        mounts=[  # like a local rerun (RELIABILITY L4): writable home volume, tmpfs /tmp
            Mount(HOME, None, type="volume", labels={LABEL: "1"}),
            Mount("/tmp", None, type="tmpfs", tmpfs_size=parse_memory(DEFAULT_TMP_SIZE)),  # noqa: S108
        ],
    )
    resources = Resources(
        cpu_limit=_nano_cpus(spec.cpu if spec.cpu is not None else DEFAULT_CPUS),
        mem_limit=spec.memory if spec.memory is not None else parse_memory(DEFAULT_MEMORY),
        cpu_reservation=_nano_cpus(spec.cpu_request),
        mem_reservation=spec.memory_request,
        # a task asking for GPUs only goes to a node that advertises that many
        generic_resources={GPU_KIND: spec.gpus} if spec.gpus else None,
    )
    resources.setdefault("Limits", {})["Pids"] = PIDS_LIMIT  # API 1.41: no fork bombs
    template = TaskTemplate(
        container,
        resources=resources,
        restart_policy=RestartPolicy(condition="none", max_attempts=0),
        placement=Placement(constraints=list(spec.constraints)) if spec.constraints else None,
        # explicit options: a daemon default such as max-size=10m would cut large results
        log_driver={"Name": "json-file", "Options": LOG_OPTIONS},
    )
    mode = ServiceMode("replicated-job", replicas=1, concurrency=1)
    body = {"Name": spec.name, "Labels": labels, "TaskTemplate": template, "Mode": mode}
    plain: dict[str, Any] = json.loads(json.dumps(body))  # docker-py's dict subclasses → dicts
    # API 1.46+ enforces it; older engines ignore the field (cap_drop ALL still leaves a setuid
    # binary without capabilities there)
    plain["TaskTemplate"]["ContainerSpec"]["Privileges"] = {"NoNewPrivileges": True}
    return plain


class SwarmBackend:
    """Jobs as Swarm ``replicated-job`` services on the engine ``client`` talks to (a manager).

    Parameters
    ----------
    client
        A ``docker.DockerClient`` for a swarm manager; default: the core's engine connection.
    constraints
        Placement constraints added to every job (e.g. ``node.role==worker``).
    keep_finished
        Seconds a finished job's service (and its log) is kept; older ones are removed when the
        next job is submitted (see :meth:`prune`).
    registry_auth
        Explicit :class:`~.registry.RegistryAuth` the nodes pull with (default: the docker
        config's credentials, which docker-py sends along like ``--with-registry-auth``).
    """

    name = "swarm"

    def __init__(
        self,
        client: Any = None,
        constraints: tuple[str, ...] | list[str] = (),
        keep_finished: float = 86400.0,
        registry_auth: Any = None,
        **_ignored: Any,
    ) -> None:
        self._client = client
        self.constraints = tuple(constraints)
        self.keep_finished = keep_finished
        self.registry_auth = registry_auth

    @property
    def client(self) -> Any:
        """The docker client (connected on first use)."""
        if self._client is None:
            from ..image.engine import connect  # the core's connection helper (lazy import)

            self._client = connect()
        return self._client

    def _with_defaults(self, spec: JobSpec) -> JobSpec:
        merged = tuple(dict.fromkeys(self.constraints + tuple(spec.constraints)))
        from dataclasses import replace

        return replace(spec, constraints=merged)

    def render(self, spec: JobSpec) -> list[dict[str, Any]]:
        """Return the service body :meth:`submit` would send."""
        return [make_service_spec(self._with_defaults(spec))]

    def check_swarm(self) -> None:
        """Raise a clear :class:`ClusterError` unless the engine is an active swarm manager (I1)."""
        try:
            swarm = self.client.info().get("Swarm") or {}
        except Exception as exc:
            raise EngineError(
                f"Docker engine not reachable ({type(exc).__name__})",
                hint="is dockerd running? check DOCKER_HOST",
            ) from None
        if swarm.get("LocalNodeState") != "active":
            raise ClusterError(
                "this Docker engine is not part of a swarm",
                hint="run `docker swarm init` (or join a swarm) first",
            )
        if not swarm.get("ControlAvailable"):
            raise ClusterError(
                "this Docker engine is a swarm worker, not a manager",
                hint="point DOCKER_HOST at a swarm manager",
            )

    def check(self) -> None:
        """Raise unless jobs can be submitted here (for the UI's backend list)."""
        self.check_swarm()

    def _find(self, job_id: str) -> Any | None:
        found = self.client.services.list(filters={"label": f"{LABEL}.job={job_id}"})
        return found[0] if found else None

    def submit(self, spec: JobSpec, reporter: Reporter = null_reporter) -> str:
        """Create the job's service (or attach to the one already made for ``spec.job_id``)."""
        import docker.errors

        self.check_swarm()
        existing = self._find(spec.job_id)
        if existing is not None:
            reporter(ProgressEvent("job", f"attached to service {existing.name}", "info"))
            return str(existing.id)
        with contextlib.suppress(Exception):  # housekeeping must never block a submission
            self.prune(self.keep_finished)
        body = self.render(spec)[0]
        if self.registry_auth is not None:
            self._login(spec.image)
        try:
            created = self.client.api.create_service(
                body["TaskTemplate"], name=body["Name"], labels=body["Labels"], mode=body["Mode"]
            )
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                existing = self._find(spec.job_id)
                if existing is not None:
                    return str(existing.id)
            raise ClusterError(
                f"Swarm refused the job: {exc.explanation or exc}",
                hint="check the constraints and resources",
            ) from None
        reporter(ProgressEvent("job", f"created Swarm service {spec.name}", "step"))
        return str(created["ID"])

    def prune(self, max_age: float = 86400.0, only: str | None = None) -> list[str]:
        """Remove envpack job services that finished more than ``max_age`` seconds ago.

        Swarm keeps a finished job's service (and so its log) until someone removes it; this is
        the TTL that Kubernetes has built in. Only services labelled ``org.jupyter.envpack.kind=
        job`` (and ``only``, another ``key=value`` label, when given) are looked at; running ones
        are never touched (RELIABILITY J7).
        """
        removed = []
        labels = [f"{LABEL}.kind=job", *([only] if only else [])]
        for service in self.client.services.list(filters={"label": labels}):
            tasks = service.tasks()
            newest = max(tasks, key=lambda t: t.get("CreatedAt", "")) if tasks else None
            when = newest.get("Status", {}).get("Timestamp") if newest else None
            finished = _parse_time(when or service.attrs.get("UpdatedAt")) or time.time()
            if time.time() - finished < max_age:
                continue
            if newest is not None and not self._task_status(newest).terminal:
                continue
            with contextlib.suppress(Exception):
                service.remove()
                removed.append(str(service.name))
        return removed

    def _login(self, image: str) -> None:
        """Hand explicit credentials to docker-py (in memory only) so the service carries them."""
        import docker.errors

        from .registry import sanitize

        registry = image.split("/", 1)[0]
        auth = self.registry_auth
        try:
            self.client.login(
                username=auth.username, password=auth.password, registry=registry, reauth=True
            )
        except docker.errors.APIError as exc:
            message = sanitize(str(exc.explanation or exc), auth.secrets())
            raise ClusterError(
                f"the registry {registry} refused the credentials: {message}",
                hint="check --registry-user and its password",
            ) from None

    def _service(self, handle: str) -> Any | None:
        import docker.errors

        try:
            return self.client.services.get(handle)
        except docker.errors.NotFound:
            return None

    def _node_state(self, node_id: str | None) -> tuple[str | None, str, str]:
        """(hostname, state, availability) of a node; ``down`` when it is gone."""
        import docker.errors

        if not node_id:
            return None, "unknown", "active"
        try:
            attrs = self.client.nodes.get(node_id).attrs
        except docker.errors.NotFound:
            return None, "down", "active"
        host = attrs.get("Description", {}).get("Hostname")
        return (
            host,
            attrs.get("Status", {}).get("State", "unknown"),
            attrs.get("Spec", {}).get("Availability", "active"),
        )

    def status(self, handle: str) -> JobStatus:
        """Return the job's status from its newest task (and that task's node)."""
        service = self._service(handle)
        if service is None:
            return JobStatus(
                JobState.LOST,
                "service-gone",
                "the Swarm service no longer exists (removed outside envpack?)",
            )
        tasks = service.tasks()
        if not tasks:
            return JobStatus(JobState.PENDING, "no-task", "waiting for Swarm to create the task")
        task = max(tasks, key=lambda t: t.get("CreatedAt", ""))
        status = self._task_status(task)
        if not status.terminal:
            status = self._check_deadline(service, status)
        return status

    def _task_status(self, task: dict[str, Any]) -> JobStatus:
        state = task.get("Status", {}).get("State", "new")
        message = task.get("Status", {}).get("Err") or task.get("Status", {}).get("Message", "")
        exit_code = task.get("Status", {}).get("ContainerStatus", {}).get("ExitCode")
        host, node_state, availability = self._node_state(task.get("NodeID"))
        if state == "complete":
            return status_from_exit_code(0, host)
        if state == "failed":
            if exit_code not in (None, 0):
                return status_from_exit_code(int(exit_code), host)
            return JobStatus(JobState.FAILED, _failure_reason(message), message, None, host)
        if state == "rejected":
            return JobStatus(
                JobState.FAILED,
                _failure_reason(message),
                f"the task was rejected: {message}",
                None,
                host,
            )
        if state in {"shutdown", "remove", "orphaned"}:
            why = "node-drained" if availability == "drain" else "node-lost"
            return JobStatus(
                JobState.LOST,
                why,
                f"Swarm stopped the task on {host or 'its node'} "
                f"({availability}, {node_state}); the job did not finish",
                None,
                host,
            )
        if node_state in {"down", "disconnected"} and state not in {"new", "pending"}:
            return JobStatus(
                JobState.LOST,
                "node-lost",
                f"node {host or task.get('NodeID')} is {node_state}; the job is lost",
                None,
                host,
            )
        if state == "running":
            return JobStatus(JobState.RUNNING, "running", f"running on {host}", None, host)
        return JobStatus(JobState.PENDING, state, message or f"task {state}", None, host)

    def _check_deadline(self, service: Any, status: JobStatus) -> JobStatus:
        attrs = service.attrs
        deadline = float(attrs.get("Spec", {}).get("Labels", {}).get(DEADLINE_LABEL, "0") or 0)
        created = _parse_time(attrs.get("CreatedAt"))
        if deadline and created and time.time() - created > deadline:
            return JobStatus(
                JobState.FAILED,
                "deadline-exceeded",
                f"the job ran longer than its deadline of {deadline:g} s "
                f"(it was {status.state.value})",
                None,
                status.node,
            )
        return status

    def _log_lines(self, handle: str, tail: int | None, stderr: bool) -> Iterator[str]:
        """The service's log line by line, read as a stream of at most :data:`MAX_LOG_BYTES`."""
        import docker.errors

        from ..bounded import lines_capped

        try:
            chunks = self.client.api.service_logs(
                handle,
                stdout=True,
                stderr=stderr,
                follow=False,
                tail="all" if tail is None else int(tail),
                is_tty=False,
            )
            yield from lines_capped(chunks, MAX_LOG_BYTES)
        except docker.errors.NotFound:
            raise ClusterError(
                f"Swarm job {handle} no longer exists", hint="its logs went with the service"
            ) from None

    def logs(self, handle: str, tail: int | None = None, stderr: bool = True) -> str:
        """Return the service's log (stdout, and stderr unless ``stderr=False``); the newest
        :data:`MAX_SHOWN_LINES` lines of at most :data:`MAX_LOG_BYTES` read."""
        shown: deque[str] = deque(maxlen=MAX_SHOWN_LINES)
        shown.extend(line[:4096] for line in self._log_lines(handle, tail, stderr))
        return "\n".join(shown) + ("\n" if shown else "")

    def result_lines(self, handle: str) -> Iterator[str]:
        """The stdout alone, streamed: the result block is never interleaved with stderr lines."""
        for line in self._log_lines(handle, None, stderr=False):
            if "incomplete log stream" in line and "not available" in line:
                raise ClusterError(
                    f"the node that ran Swarm job {handle} is not reachable, so its "
                    "log (and the executed notebook in it) cannot be read",
                    hint="bring the node back, then run `jupyter envpack fetch ID`",
                )
            yield line

    def result_log(self, handle: str) -> str:
        """The stdout alone as text (prefer :meth:`result_lines`, which never holds it whole)."""
        return "\n".join(self.result_lines(handle))

    def cancel(self, handle: str) -> None:
        """Remove the job's service (its task is stopped); a missing service is fine."""
        service = self._service(handle)
        if service is not None:
            import docker.errors

            with contextlib.suppress(docker.errors.NotFound):
                service.remove()


def _failure_reason(message: str) -> str:
    low = message.lower()
    if any(word in low for word in _PULL_WORDS):
        return "image-pull-failed"
    if "oom" in low or "memory" in low:
        return "killed-or-oom"
    return "task-failed"
