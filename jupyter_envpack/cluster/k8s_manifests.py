"""Pure builders of the Kubernetes Job and CronJob that run one envpack image.

Nothing here talks to a cluster: :func:`make_job` and :func:`make_cronjob` turn a
:class:`~.base.JobSpec` plus :class:`KubernetesOptions` into plain dicts (golden-tested and
validated against the Kubernetes 1.30 schemas). The pod follows the *restricted* pod security
standard: numeric non-root user, no privilege escalation, every capability dropped, the runtime's
default seccomp profile and no service-account token.

A sweep is one *Indexed* Job (:func:`make_sweep_job`): every pod gets all parameter rows in
``ENVPACK_SWEEP_ROWS`` (JSON; no ConfigMap, so one object to create and delete) and Kubernetes'
own ``JOB_COMPLETION_INDEX``; a few lines run by the image's runner interpreter put row
``index`` into ``ENVPACK_PARAMETERS_CELL`` and ``exec`` the runner, so its exit code is the pod's.
``backoffLimitPerIndex`` with a ``FailIndex`` rule for the notebook's own exit codes lets a failed
member fail alone while the others go on.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from pathlib import PurePosixPath
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..contract import LABEL, NOTEBOOK_EXIT_CODES, PARAMETERS_ENV, RUNNER_PYTHON, USER_ID
from ..errors import InputError
from .base import JobSpec

CONTAINER_NAME = "notebook"
JOB_NAME_MAX = 63  # a Job's name becomes the pods' `job-name` label value (≤ 63)
CRONJOB_NAME_MAX = 52  # the controller appends an 11-character suffix to each Job it makes
NOTEBOOK_ANNOTATION = "jupyter.org/envpack-notebook"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
ROWS_ENV = "ENVPACK_SWEEP_ROWS"
GPU_RESOURCE = "nvidia.com/gpu"
#: Run by the image's runner interpreter: pick this pod's row, then become the runner.
PICK_ROW = (
    "import json, os, sys\n"
    f"rows = json.loads(os.environ.pop({ROWS_ENV!r}))\n"
    f"os.environ[{PARAMETERS_ENV!r}] = rows[int(os.environ['JOB_COMPLETION_INDEX'])]\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)
_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_CRON_NAMES = {
    3: ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"],
    4: ["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
}
_CRON_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_CRON_FIELD = ("minute", "hour", "day of month", "month", "day of week")


@dataclass(frozen=True)
class KubernetesOptions:
    """Cluster-side settings that are not part of one job.

    Parameters
    ----------
    namespace
        Where the Job is created.
    image_pull_secrets
        Names of existing ``kubernetes.io/dockerconfigjson`` secrets (never their contents).
    ttl_seconds_after_finished
        How long a finished Job (and its pods, with their logs) is kept.
    backoff_limit
        Retries for failures that are not the notebook's own (a node lost, an eviction...).
    default_cpu, default_memory
        Limits used when the job does not set any (restricted clusters demand limits).
    starting_deadline_seconds
        How late a CronJob may start a missed run.
    gpu_node_selector, gpu_tolerations
        Added to the pods of jobs that ask for GPUs (a GPU node pool's labels and taints).
    gpu_resource
        The extended resource GPUs are counted in (the NVIDIA device plugin's by default).
    """

    namespace: str = "default"
    image_pull_secrets: tuple[str, ...] = ()
    ttl_seconds_after_finished: int = 86400
    backoff_limit: int = 1
    default_cpu: float = 1.0
    default_memory: int = 2 * 1024**3
    starting_deadline_seconds: int = 300
    gpu_node_selector: tuple[tuple[str, str], ...] = ()
    gpu_tolerations: tuple[tuple[tuple[str, Any], ...], ...] = ()
    gpu_resource: str = GPU_RESOURCE


def _slug(text: str) -> str:
    stem = PurePosixPath(text.replace("\\", "/")).name
    stem = stem[: -len(".ipynb")] if stem.lower().endswith(".ipynb") else stem
    slug = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")
    return slug or "notebook"


def job_name(notebook: str, salt: str = "", *, max_length: int = JOB_NAME_MAX) -> str:
    """Return a DNS-1123 name ``<slug>-<hash10>`` unique per (notebook path, salt), ≤ max_length."""
    digest = hashlib.sha256(f"{notebook}\0{salt}".encode()).hexdigest()[:10]
    room = max_length - len(digest) - 1
    slug = _slug(notebook)[:room].rstrip("-") or "nb"
    return f"{slug}-{digest}"


def is_dns_label(name: str, max_length: int = JOB_NAME_MAX) -> bool:
    """Whether ``name`` is a DNS-1123 label no longer than ``max_length``."""
    return len(name) <= max_length and _DNS1123_LABEL.fullmatch(name) is not None


def validate_labels(labels: dict[str, str]) -> dict[str, str]:
    """Return ``labels`` when every key and value is a valid Kubernetes label, else raise."""
    for key, value in labels.items():
        if len(key.rpartition("/")[2]) > 63 or not _LABEL_KEY.fullmatch(key):
            raise InputError(f"invalid Kubernetes label key {key!r}")
        if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
            raise InputError(
                f"invalid Kubernetes label value {value!r} for {key}",
                hint="label values are ≤ 63 characters of [A-Za-z0-9-_.]",
            )
    return labels


def _cron_value(token: str, index: int) -> int:
    names = _CRON_NAMES.get(index)
    if names and token.lower() in names:
        return names.index(token.lower()) + (1 if index == 3 else 0)
    if not token.isdigit():
        raise ValueError(token)
    low, high = _CRON_RANGES[index]
    value = int(token)
    if not low <= value <= high:
        raise ValueError(token)
    return value


def _check_cron_field(text: str, index: int) -> None:
    for part in text.split(","):
        base, _, step = part.partition("/")
        if step and (not step.isdigit() or int(step) == 0):
            raise ValueError(part)
        if base in {"*", "?"}:
            continue
        low, dash, high = base.partition("-")
        if dash:
            if _cron_value(low, index) > _cron_value(high, index):
                raise ValueError(part)
        else:
            _cron_value(low, index)


def validate_schedule(schedule: str) -> str:
    """Return ``schedule`` when it is a 5-field cron line (or a macro) Kubernetes accepts."""
    text = " ".join(schedule.split())
    if text in _CRON_MACROS:
        return text
    if "TZ=" in text:
        raise InputError(
            "put the time zone in --timezone, not in the schedule",
            hint="Kubernetes rejects CRON_TZ= and TZ= inside schedules",
        )
    fields = text.split(" ")
    if len(fields) == 6:
        raise InputError(
            f"schedule {schedule!r} has 6 fields; CronJobs have minute resolution",
            hint="use 5 fields: minute hour day-of-month month day-of-week",
        )
    if len(fields) != 5:
        raise InputError(
            f"schedule {schedule!r} is not a 5-field cron line",
            hint='e.g. "0 6 * * *" runs every day at 06:00',
        )
    for index, part in enumerate(fields):
        try:
            _check_cron_field(part, index)
        except ValueError:
            raise InputError(
                f"schedule {schedule!r}: bad {_CRON_FIELD[index]} field {part!r}",
                hint='e.g. "0 6 * * *" runs every day at 06:00',
            ) from None
    return text


def validate_timezone(timezone: str) -> str:
    """Return ``timezone`` when it is an IANA zone name such as ``Europe/Paris``."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*", timezone):
        raise InputError(f"invalid time zone {timezone!r}", hint="use an IANA name like UTC")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(
            f"unknown time zone {timezone!r}", hint="use an IANA name such as UTC or Europe/Paris"
        ) from None
    return timezone


def cpu_quantity(cores: float) -> str:
    """Render cores as a Kubernetes quantity (``"500m"``, ``"2"``)."""
    millis = round(cores * 1000)
    if millis <= 0:
        raise InputError(f"cpu must be positive, not {cores}")
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def memory_quantity(size: int) -> str:
    """Render bytes as a Kubernetes quantity (``"512Mi"``, or plain bytes)."""
    for unit, factor in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def _resources(spec: JobSpec, options: KubernetesOptions) -> dict[str, dict[str, str]]:
    cpu = spec.cpu or options.default_cpu
    memory = spec.memory or options.default_memory
    return {
        "requests": {
            "cpu": cpu_quantity(min(spec.cpu_request or cpu, cpu)),
            "memory": memory_quantity(min(spec.memory_request or memory, memory)),
        },
        "limits": {
            "cpu": cpu_quantity(cpu),
            "memory": memory_quantity(memory),
            **({options.gpu_resource: str(spec.gpus)} if spec.gpus else {}),
        },
    }


def _labels(spec: JobSpec) -> dict[str, str]:
    return validate_labels(spec.all_labels())


def _pod_spec(spec: JobSpec, options: KubernetesOptions) -> dict[str, Any]:
    container = {
        "name": CONTAINER_NAME,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "command": spec.command(),
        "env": [{"name": k, "value": v} for k, v in sorted(spec.environment().items())],
        "resources": _resources(spec, options),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "runAsUser": USER_ID,
            "runAsGroup": USER_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": USER_ID,
            "runAsGroup": USER_ID,
            "fsGroup": USER_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
    }
    if options.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": n} for n in options.image_pull_secrets]
    if spec.gpus and options.gpu_node_selector:
        pod["nodeSelector"] = dict(options.gpu_node_selector)
    if spec.gpus and options.gpu_tolerations:
        pod["tolerations"] = [dict(t) for t in options.gpu_tolerations]
    return pod


def _failure_rules(action: str) -> dict[str, Any]:
    return {
        "rules": [
            # The notebook itself failed: running it again gives the same answer.
            {
                "action": action,
                "onExitCodes": {
                    "containerName": CONTAINER_NAME,
                    "operator": "In",
                    "values": list(NOTEBOOK_EXIT_CODES),
                },
            },
            # Evicted or preempted: not the notebook's fault, and not counted as a retry.
            {
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
        ]
    }


def _job_spec(spec: JobSpec, options: KubernetesOptions) -> dict[str, Any]:
    return {
        "backoffLimit": options.backoff_limit,
        "activeDeadlineSeconds": max(1, int(spec.deadline)),
        "ttlSecondsAfterFinished": options.ttl_seconds_after_finished,
        "podFailurePolicy": _failure_rules("FailJob"),
        "template": {"metadata": {"labels": _labels(spec)}, "spec": _pod_spec(spec, options)},
    }


def _metadata(spec: JobSpec, options: KubernetesOptions, max_length: int) -> dict[str, Any]:
    if not is_dns_label(spec.name, max_length):
        raise InputError(
            f"invalid object name {spec.name!r}",
            hint=f"a DNS-1123 label of at most {max_length} characters",
        )
    meta: dict[str, Any] = {
        "name": spec.name,
        "namespace": options.namespace,
        "labels": _labels(spec),
    }
    if spec.notebook:
        meta["annotations"] = {NOTEBOOK_ANNOTATION: spec.notebook}
    return meta


def make_job(spec: JobSpec, options: KubernetesOptions | None = None) -> dict[str, Any]:
    """Return the ``batch/v1`` Job that runs ``spec`` once."""
    options = options or KubernetesOptions()
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(spec, options, JOB_NAME_MAX),
        "spec": _job_spec(spec, options),
    }


def make_cronjob(spec: JobSpec, options: KubernetesOptions | None = None) -> dict[str, Any]:
    """Return the ``batch/v1`` CronJob that runs ``spec`` on ``spec.schedule``."""
    options = options or KubernetesOptions()
    if not spec.schedule:
        raise InputError("a CronJob needs a schedule", hint='e.g. --schedule "0 6 * * *"')
    cron: dict[str, Any] = {
        "schedule": validate_schedule(spec.schedule),
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": options.starting_deadline_seconds,
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {"metadata": {"labels": _labels(spec)}, "spec": _job_spec(spec, options)},
    }
    if spec.timezone:
        cron["timeZone"] = validate_timezone(spec.timezone)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": _metadata(spec, options, CRONJOB_NAME_MAX),
        "spec": cron,
    }


def make_sweep_job(
    spec: JobSpec, cells: list[str], max_parallel: int, options: KubernetesOptions | None = None
) -> dict[str, Any]:
    """Return the Indexed Job that runs ``spec`` once per parameters cell in ``cells``.

    ``max_parallel`` pods run at once; each member is retried ``options.backoff_limit`` times
    for failures that are not the notebook's (``backoffLimitPerIndex``, Kubernetes >= 1.29), and
    a member whose notebook fails stops alone (``FailIndex``). ``spec.deadline`` bounds each pod;
    the Job's own deadline allows every wave of members its retries.
    """
    options = options or KubernetesOptions()
    if not cells:
        raise InputError("a sweep needs at least one parameter row")
    job = make_job(replace(spec, parameters_cell=None), options)
    parallel = max(1, min(int(max_parallel), len(cells)))
    waves = -(-len(cells) // parallel) * (options.backoff_limit + 1)
    body, pod = job["spec"], job["spec"]["template"]["spec"]
    del body["backoffLimit"]  # per index instead: one member's retries never end the others
    body.update(
        completionMode="Indexed",
        completions=len(cells),
        parallelism=parallel,
        backoffLimitPerIndex=options.backoff_limit,
        activeDeadlineSeconds=max(1, int(spec.deadline)) * waves,
        podFailurePolicy=_failure_rules("FailIndex"),
    )
    pod["activeDeadlineSeconds"] = max(1, int(spec.deadline))
    container = pod["containers"][0]
    container["env"].append({"name": ROWS_ENV, "value": json.dumps(cells)})
    container["command"] = [RUNNER_PYTHON, "-c", PICK_ROW, *container["command"]]
    return job


def make_manifest(spec: JobSpec, options: KubernetesOptions | None = None) -> dict[str, Any]:
    """Return a CronJob when ``spec`` has a schedule, else a Job."""
    return make_cronjob(spec, options) if spec.schedule else make_job(spec, options)


__all__ = [
    "CONTAINER_NAME",
    "CRONJOB_NAME_MAX",
    "JOB_NAME_MAX",
    "LABEL",
    "KubernetesOptions",
    "cpu_quantity",
    "is_dns_label",
    "job_name",
    "make_cronjob",
    "make_job",
    "make_manifest",
    "make_sweep_job",
    "memory_quantity",
    "validate_labels",
    "validate_schedule",
    "validate_timezone",
]
