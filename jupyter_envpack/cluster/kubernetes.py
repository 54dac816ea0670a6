"""Run an envpack image as a Kubernetes Job (or CronJob) with the official ``kubernetes`` client.

A thin flow over the pure builders of :mod:`.k8s_manifests`: create (409 = attach to the Job
already made for this envpack job), follow (a watch that restarts after ``410 Gone``), read
status from the Job's conditions and its pods' waiting reasons (``ImagePullBackOff`` and friends
become clear failures after a grace period), logs, cancel (404 = already gone).

Every API call carries ``_request_timeout`` — injected even when a caller passed ``None`` — and
transient failures (connection errors, timeouts, 429/5xx) are retried with bounded exponential
backoff. Handles are ``<namespace>/<job|cronjob>/<name>``, so any later process can find the job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ClusterError, InputError
from ..events import CancelToken, ProgressEvent, Reporter, null_reporter
from .base import JobSpec, JobState, JobStatus, status_from_exit_code, wait_for
from .k8s_manifests import CONTAINER_NAME, KubernetesOptions, make_manifest

T = TypeVar("T")
IN_CLUSTER_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
RETRY_STATUSES = {429, 500, 502, 503, 504}
# Waiting reasons that never fix themselves (fail at once) and those that may (fail after grace).
FATAL_WAITING = {"InvalidImageName", "CreateContainerConfigError", "CreateContainerError"}
PULL_WAITING = {"ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "RegistryUnavailable"}


def _k8s() -> Any:
    import kubernetes

    return kubernetes


def parse_handle(handle: str) -> tuple[str, str, str]:
    """Split ``<namespace>/<job|cronjob>/<name>``."""
    parts = handle.split("/")
    if len(parts) != 3 or parts[1] not in {"job", "cronjob"} or not all(parts):
        raise InputError(f"not a Kubernetes job handle: {handle!r}")
    return parts[0], parts[1], parts[2]


class KubernetesBackend:
    """Jobs and CronJobs on the cluster of the user's kubeconfig (or the in-cluster config).

    Parameters
    ----------
    namespace
        Where jobs are created; default: the kubeconfig context's namespace, else ``default``.
    kubeconfig, context
        Which kubeconfig file and context to use (``None``: the client's defaults).
    image_pull_secrets
        Names of existing pull secrets added to every pod.
    api_client
        An already-configured ``kubernetes.client.ApiClient`` (tests point one at a fake server).
    request_timeout
        ``(connect, read)`` seconds for every call.
    retry_budget
        Seconds spent retrying a transient failure before giving up.
    pull_grace
        Seconds a pod may sit in ``ImagePullBackOff``/``ErrImagePull`` before the job fails.
    gpu_node_selector, gpu_tolerations
        Node labels and tolerations added to the pods of jobs that ask for GPUs, e.g.
        ``{"cloud.google.com/gke-accelerator": "nvidia-l4"}`` and
        ``[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]``.
    """

    name = "kubernetes"

    def __init__(
        self,
        namespace: str | None = None,
        kubeconfig: str | None = None,
        context: str | None = None,
        image_pull_secrets: tuple[str, ...] | list[str] = (),
        api_client: Any = None,
        request_timeout: tuple[float, float] = (3.0, 30.0),
        retry_budget: float = 30.0,
        pull_grace: float = 60.0,
        options: KubernetesOptions | None = None,
        gpu_node_selector: dict[str, str] | None = None,
        gpu_tolerations: list[dict[str, Any]] | None = None,
        **_ignored: Any,
    ) -> None:
        self._api_client = api_client
        self.kubeconfig = kubeconfig
        self.context = context
        self.request_timeout = request_timeout
        self.retry_budget = retry_budget
        self.pull_grace = pull_grace
        base = options or KubernetesOptions()
        self._namespace = namespace
        self.options = replace(
            base,
            image_pull_secrets=tuple(image_pull_secrets) or base.image_pull_secrets,
            gpu_node_selector=tuple(sorted((gpu_node_selector or {}).items()))
            or base.gpu_node_selector,
            gpu_tolerations=tuple(tuple(t.items()) for t in gpu_tolerations or ())
            or base.gpu_tolerations,
        )

    # -- connection -------------------------------------------------------------------------
    @property
    def api_client(self) -> Any:
        """The configured ApiClient (kubeconfig first, then in-cluster)."""
        if self._api_client is None:
            self._api_client = self._load_client()
        return self._api_client

    def _load_client(self) -> Any:
        k8s = _k8s()
        cfg = k8s.client.Configuration()
        try:
            k8s.config.load_kube_config(
                config_file=self.kubeconfig, context=self.context, client_configuration=cfg
            )
        except Exception:  # no usable kubeconfig: try the in-cluster config
            try:
                k8s.config.load_incluster_config(client_configuration=cfg)
            except Exception:
                raise ClusterError(
                    "no Kubernetes configuration found",
                    hint="set KUBECONFIG or pass --kubeconfig/--context",
                ) from None
        cfg.retries = False  # our own bounded retry decides; urllib3 must not retry silently
        return k8s.client.ApiClient(cfg)

    def check(self) -> None:
        """Raise unless a kubeconfig or in-cluster config is there (nothing is contacted)."""
        _ = self.api_client

    @property
    def namespace(self) -> str:
        """The namespace new jobs go to: given, else the kubeconfig context's, else in-cluster's,
        else ``KubernetesOptions.namespace`` (reading files only: a dry run contacts nothing)."""
        if self._namespace is None:
            self._namespace = self._configured_namespace() or self.options.namespace
        return self._namespace

    def _configured_namespace(self) -> str | None:
        try:
            contexts, active = _k8s().config.list_kube_config_contexts(config_file=self.kubeconfig)
        except Exception:  # no kubeconfig: perhaps we run inside a cluster
            contexts, active = [], None
        chosen = (
            next((c for c in contexts if c.get("name") == self.context), None)
            if self.context
            else active
        )
        found = ((chosen or {}).get("context") or {}).get("namespace")
        if found:
            return str(found)
        try:
            return IN_CLUSTER_NAMESPACE.read_text().strip() or None
        except OSError:
            return None

    def _batch(self) -> Any:
        return _k8s().client.BatchV1Api(self.api_client)

    def _core(self) -> Any:
        return _k8s().client.CoreV1Api(self.api_client)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call ``fn`` with ``_request_timeout`` forced, retrying transient failures (I3)."""
        import urllib3.exceptions

        api_exception = _k8s().client.exceptions.ApiException
        kwargs["_request_timeout"] = self.request_timeout
        end, delay = time.monotonic() + self.retry_budget, 0.5
        while True:
            try:
                return fn(*args, **kwargs)
            except api_exception as exc:
                if exc.status not in RETRY_STATUSES or time.monotonic() + delay > end:
                    raise
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if time.monotonic() + delay > end:
                    raise ClusterError(
                        f"Kubernetes API not reachable ({type(exc).__name__})",
                        hint="check the cluster address in the kubeconfig and the network",
                    ) from None
            time.sleep(delay)
            delay = min(delay * 2, 8.0)

    def _api_error(self, exc: Any, what: str) -> ClusterError:
        reason = getattr(exc, "reason", "") or ""
        hints = {
            401: "the kubeconfig's credentials were refused",
            403: "your account may not do this in the namespace (RBAC)",
            404: "the namespace or object does not exist",
            422: "the cluster refused the manifest; try --dry-run to inspect it",
        }
        return ClusterError(
            f"Kubernetes refused to {what}: HTTP {exc.status} {reason}".strip(),
            hint=hints.get(exc.status, "see the API server's events"),
        )

    # -- Backend ----------------------------------------------------------------------------
    def render(self, spec: JobSpec) -> list[dict[str, Any]]:
        """Return the Job or CronJob :meth:`submit` would create (no cluster contacted)."""
        return [make_manifest(spec, replace(self.options, namespace=self.namespace))]

    def submit(self, spec: JobSpec, reporter: Reporter = null_reporter) -> str:
        """Create the Job/CronJob; a 409 means it already exists: attach to it."""
        return self.create(self.render(spec)[0], reporter)

    def create(self, manifest: dict[str, Any], reporter: Reporter = null_reporter) -> str:
        """Create a Job/CronJob ``manifest`` and return its handle (409: attach to it)."""
        kind = "cronjob" if manifest["kind"] == "CronJob" else "job"
        handle = f"{self.namespace}/{kind}/{manifest['metadata']['name']}"
        create = (
            self._batch().create_namespaced_cron_job
            if kind == "cronjob"
            else self._batch().create_namespaced_job
        )
        api_exception = _k8s().client.exceptions.ApiException
        try:
            self.call(create, self.namespace, manifest)
            reporter(ProgressEvent("job", f"created {manifest['kind']} {handle}", "step"))
        except api_exception as exc:
            if exc.status != 409:
                raise self._api_error(exc, f"create {manifest['kind']}") from None
            reporter(ProgressEvent("job", f"{handle} already exists: attached", "info"))
        return handle

    def cancel(self, handle: str) -> None:
        """Delete the Job/CronJob and its pods (the Job goes after its pods: ``Foreground``);
        a 404 means it is already gone."""
        namespace, kind, name = parse_handle(handle)
        k8s = _k8s()
        delete = (
            self._batch().delete_namespaced_cron_job
            if kind == "cronjob"
            else self._batch().delete_namespaced_job
        )
        try:
            self.call(
                delete,
                name,
                namespace,
                body=k8s.client.V1DeleteOptions(propagation_policy="Foreground"),
            )
        except k8s.client.exceptions.ApiException as exc:
            if exc.status != 404:
                raise self._api_error(exc, f"delete {handle}") from None

    def pods(self, namespace: str, job: str) -> list[Any]:
        """The pods of Job ``job``, oldest first."""
        found = self.call(
            self._core().list_namespaced_pod, namespace, label_selector=f"job-name={job}"
        )
        return sorted(found.items or [], key=_created)

    def status(self, handle: str) -> JobStatus:
        """Return the status from the Job's conditions, then from its newest pod."""
        namespace, kind, name = parse_handle(handle)
        api_exception = _k8s().client.exceptions.ApiException
        try:
            if kind == "cronjob":
                return self._cron_status(namespace, name)
            job = self.call(self._batch().read_namespaced_job, name, namespace)
            pods = self.pods(namespace, name)
        except api_exception as exc:
            if exc.status == 404:
                return JobStatus(
                    JobState.LOST,
                    "job-gone",
                    f"{handle} no longer exists (deleted, or its TTL expired)",
                )
            raise self._api_error(exc, f"read {handle}") from None
        return job_status(job, pods, self.pull_grace)

    def _cron_status(self, namespace: str, name: str) -> JobStatus:
        cron = self.call(self._batch().read_namespaced_cron_job, name, namespace)
        last = getattr(cron.status, "last_schedule_time", None) if cron.status else None
        when = f"last run {last:%Y-%m-%d %H:%M} UTC" if last else "not run yet"
        return JobStatus(
            JobState.RUNNING, "scheduled", f"CronJob on schedule {cron.spec.schedule!r}; {when}"
        )

    def _log_pod(self, handle: str) -> tuple[str, Any]:
        namespace, kind, name = parse_handle(handle)
        job = name
        if kind == "cronjob":
            listed = self.call(
                self._batch().list_namespaced_job,
                namespace,
                label_selector="org.jupyter.envpack.kind=job",
            )
            runs = [
                j
                for j in listed.items or []
                if any(o.name == name for o in j.metadata.owner_references or [])
            ]
            if not runs:
                raise ClusterError(f"CronJob {name} has not run yet")
            job = max(runs, key=_created).metadata.name
        pods = self.pods(namespace, job)
        if not pods:
            raise ClusterError(f"{handle} has no pod yet", hint="wait until it starts")
        done = [p for p in pods if (p.status and p.status.phase) == "Succeeded"]
        return namespace, (done or pods)[-1]

    def logs(self, handle: str, tail: int | None = None) -> str:
        """Return the log of the job's succeeded pod (else its newest pod)."""
        namespace, pod = self._log_pod(handle)
        return self.pod_log(namespace, pod.metadata.name, tail)

    def pod_log(self, namespace: str, pod: str, tail: int | None = None) -> str:
        """The notebook container's log in pod ``pod``."""
        kwargs: dict[str, Any] = {"container": CONTAINER_NAME}
        if tail is not None:
            kwargs["tail_lines"] = int(tail)
        try:
            text = self.call(self._core().read_namespaced_pod_log, pod, namespace, **kwargs)
        except _k8s().client.exceptions.ApiException as exc:
            raise self._api_error(exc, f"read the log of {pod}") from None
        return text if isinstance(text, str) else bytes(text).decode("utf-8", errors="replace")

    def wait(
        self,
        handle: str,
        *,
        timeout: float,
        reporter: Reporter = null_reporter,
        cancel: CancelToken | None = None,
        watch_seconds: int = 10,
    ) -> JobStatus:
        """Follow the job with a watch until it is over (410 Gone restarts the watch)."""
        namespace, kind, name = parse_handle(handle)
        if kind == "cronjob":
            raise InputError("a CronJob never finishes: --wait does not apply to --schedule")
        k8s = _k8s()
        resource_version: list[str | None] = [None]

        def pause(remaining: float) -> None:
            seconds = int(max(1, min(watch_seconds, remaining)))
            resource_version[0] = self._watch_once(
                k8s, namespace, name, resource_version[0], seconds
            )

        return wait_for(
            self, handle, timeout=timeout, reporter=reporter, cancel=cancel, pause=pause
        )

    def _watch_once(
        self, k8s: Any, namespace: str, name: str, resource_version: str | None, seconds: int
    ) -> str | None:
        """Wait for one change of the Job (or ``seconds``); return the resourceVersion to resume."""
        watch = k8s.watch.Watch()
        kwargs: dict[str, Any] = {
            "field_selector": f"metadata.name={name}",
            "timeout_seconds": seconds,
            "_request_timeout": (self.request_timeout[0], seconds + 5),
        }
        if resource_version:
            kwargs["resource_version"] = resource_version
        try:
            for event in watch.stream(self._batch().list_namespaced_job, namespace, **kwargs):
                obj = event.get("object")
                meta = getattr(obj, "metadata", None)
                watch.stop()
                return getattr(meta, "resource_version", None) or resource_version
        except k8s.client.exceptions.ApiException as exc:
            if exc.status == 410:  # our resourceVersion is too old: start again from "any"
                return "0"
            if exc.status not in RETRY_STATUSES:
                raise self._api_error(exc, f"watch job {name}") from None
            time.sleep(1)
        except Exception:  # a dropped or timed-out watch: poll status again
            time.sleep(1)
        return resource_version


def _created(obj: Any) -> float:
    stamp = obj.metadata.creation_timestamp
    return 0.0 if stamp is None else float(stamp.timestamp())


def _waiting_reason(pod: Any) -> tuple[str, str]:
    statuses = (pod.status.container_statuses or []) if pod.status else []
    for status in statuses:
        waiting = status.state.waiting if status.state else None
        if waiting and waiting.reason:
            return waiting.reason, waiting.message or ""
    return "", ""


def _exit_code(pod: Any) -> int | None:
    statuses = (pod.status.container_statuses or []) if pod.status else []
    for status in statuses:
        terminated = status.state.terminated if status.state else None
        if terminated is not None and terminated.exit_code is not None:
            return int(terminated.exit_code)
    return None


def _age(pod: Any) -> float:
    created = pod.metadata.creation_timestamp
    return 0.0 if created is None else time.time() - created.timestamp()


def _pending_message(pod: Any) -> str:
    for cond in (pod.status.conditions or []) if pod.status else []:
        if cond.type == "PodScheduled" and cond.status == "False":
            return f"not scheduled: {cond.message or cond.reason}"
    return "waiting for a node"


def job_status(job: Any, pods: list[Any], pull_grace: float) -> JobStatus:
    """Map a V1Job and its pods (oldest first) to a :class:`JobStatus`."""
    if job.metadata is not None and job.metadata.deletion_timestamp is not None:
        return JobStatus(
            JobState.CANCELLED, "deleting", "the Job is being deleted (its pods first)"
        )
    for cond in (job.status.conditions or []) if job.status else []:
        if cond.status != "True":
            continue
        if cond.type == "Complete":
            return status_from_exit_code(0, _node(pods))
        if cond.type == "Failed":
            return _failed_status(cond, pods)
    return pod_status(pods, pull_grace)


def pod_status(pods: list[Any], pull_grace: float) -> JobStatus:
    """The state of a job (or one sweep member) that has no final condition, from its newest pod."""
    if not pods:
        return JobStatus(JobState.PENDING, "no-pod", "waiting for the Job controller")
    pod = pods[-1]
    reason, message = _waiting_reason(pod)
    if reason in FATAL_WAITING or (reason in PULL_WAITING and _age(pod) > pull_grace):
        slug = "image-pull-failed" if reason in PULL_WAITING else "bad-container-config"
        return JobStatus(
            JobState.FAILED, slug, f"{reason}: {message}".rstrip(": "), None, _node(pods)
        )
    phase = pod.status.phase if pod.status else "Pending"
    if phase == "Running":
        return JobStatus(
            JobState.RUNNING, "running", f"running in pod {pod.metadata.name}", None, _node(pods)
        )
    text = f"{reason}: {message}".rstrip(": ") if reason else _pending_message(pod)
    return JobStatus(JobState.PENDING, reason or "pending", text, None, _node(pods))


def _failed_status(cond: Any, pods: list[Any]) -> JobStatus:
    code = next((c for c in (_exit_code(p) for p in reversed(pods)) if c is not None), None)
    if cond.reason == "DeadlineExceeded":
        return JobStatus(
            JobState.FAILED,
            "deadline-exceeded",
            "the job ran longer than its deadline",
            code,
            _node(pods),
        )
    if code not in (None, 0):
        return status_from_exit_code(code, _node(pods))
    return JobStatus(
        JobState.FAILED,
        "job-failed",
        f"{cond.reason or 'Failed'}: {cond.message or 'the Job failed'}",
        code,
        _node(pods),
    )


def _node(pods: list[Any]) -> str | None:
    for pod in reversed(pods):
        if pod.spec is not None and pod.spec.node_name:
            return str(pod.spec.node_name)
    return None
