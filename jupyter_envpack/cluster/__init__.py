"""Cluster jobs: push the notebook's image to a registry and run it on Docker Swarm or Kubernetes.

::

    base.py           Backend protocol, JobSpec / JobStatus, lookup by name, wait_for, results
    registry.py       push_image: in-band stream errors, sanitised messages, layer counts
    swarm.py          SwarmBackend: replicated-job services, task/node states, logs, prune
    k8s_manifests.py  make_job / make_cronjob: pure, restricted pod security, DNS-safe names
    kubernetes.py     KubernetesBackend: timeouts and retries on every call, 409/410, pull failures
    jobs.py           submit → follow → fetch, the local job index, backend availability
    cli.py            jupyter envpack submit | jobs | logs | cancel | fetch
    operation.py      the server's ``job`` operation kind (run, resume after a restart)

Heavy clients (docker, kubernetes) are imported inside the functions that use them.
"""

from __future__ import annotations

from .base import Backend, JobSpec, JobState, JobStatus, backend_names, get_backend
from .jobs import (
    JobIndex,
    JobRecord,
    SubmitOptions,
    backend_availability,
    cancel,
    fetch,
    follow,
    logs,
    submit,
)
from .k8s_manifests import KubernetesOptions, make_cronjob, make_job
from .registry import PushResult, RegistryAuth, push_image

__all__ = [
    "Backend",
    "JobIndex",
    "JobRecord",
    "JobSpec",
    "JobState",
    "JobStatus",
    "KubernetesOptions",
    "PushResult",
    "RegistryAuth",
    "SubmitOptions",
    "backend_availability",
    "backend_names",
    "cancel",
    "fetch",
    "follow",
    "get_backend",
    "logs",
    "make_cronjob",
    "make_job",
    "push_image",
    "submit",
]
