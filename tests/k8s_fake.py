"""A scripted Kubernetes API server (pytest-httpserver) and the objects it answers with.

Shared by tests/unit/cluster/test_cluster_kubernetes.py and test_cluster_k8s_sweep.py.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import kubernetes
import pytest
from pytest_httpserver import HTTPServer

from jupyter_envpack.cluster.base import JobSpec
from jupyter_envpack.cluster.kubernetes import KubernetesBackend

NS = "science"
JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"
PODS = f"/api/v1/namespaces/{NS}/pods"
SPEC = JobSpec(
    job_id="feedbeef",
    name="analysis-0123456789",
    image="127.0.0.1:5000/envpack/a:1",
    notebook="analysis.ipynb",
    parameters_cell="n = 3\n",
    deadline=600,
)
HANDLE = f"{NS}/job/analysis-0123456789"


@pytest.fixture(scope="module")
def api_server() -> Iterator[HTTPServer]:
    server = HTTPServer(threaded=True)  # threaded: a sleeping handler must not block the rest
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture
def fake(api_server: HTTPServer) -> Iterator[HTTPServer]:
    api_server.clear()
    yield api_server
    api_server.clear()


def backend_for(server: HTTPServer, **kwargs: Any) -> KubernetesBackend:
    cfg = kubernetes.client.Configuration()
    cfg.host = server.url_for("").rstrip("/")
    cfg.retries = False
    kwargs.setdefault("retry_budget", 5.0)
    return KubernetesBackend(namespace=NS, api_client=kubernetes.client.ApiClient(cfg), **kwargs)


def stamp(seconds_ago: float = 0) -> str:
    moment = datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def job_obj(conditions: list[dict[str, str]] | None = None, rv: str = "10") -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": SPEC.name, "namespace": NS, "resourceVersion": rv},
        "spec": {"template": {"spec": {"containers": [{"name": "notebook"}]}}},
        "status": {"conditions": [{"lastTransitionTime": stamp(), **c} for c in conditions or []]},
    }


def pod_obj(
    name: str,
    phase: str,
    *,
    waiting: str | None = None,
    exit_code: int | None = None,
    age: float = 1,
    conditions: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {}}
    if waiting:
        state = {"waiting": {"reason": waiting, "message": f"{waiting} for the image"}}
    elif exit_code is not None:
        state = {"terminated": {"exitCode": exit_code}}
    return {
        "metadata": {"name": name, "namespace": NS, "creationTimestamp": stamp(age)},
        "spec": {"containers": [{"name": "notebook"}], "nodeName": "node-a"},
        "status": {
            "phase": phase,
            "conditions": conditions or [],
            "containerStatuses": [
                {
                    "name": "notebook",
                    "image": SPEC.image,
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "state": state,
                }
            ],
        },
    }


def pod_list(*pods: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": list(pods)}


def serve_state(fake: HTTPServer, job: dict[str, Any], pods: dict[str, Any]) -> None:
    fake.expect_oneshot_request(f"{JOBS}/{SPEC.name}", method="GET").respond_with_json(job)
    fake.expect_oneshot_request(PODS, method="GET").respond_with_json(pods)


def write_kubeconfig(folder: Any, server: HTTPServer) -> Any:
    kubeconfig = folder / "kubeconfig"
    cluster = {"server": server.url_for("").rstrip("/")}
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "lab",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "lab", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )
    return kubeconfig


def result_log(values: dict[str, Any]) -> str:
    """A runner's log whose executed notebook recorded ``values`` (sweep summary input)."""
    output = {
        "output_type": "display_data",
        "metadata": {},
        "data": {"application/vnd.envpack.record+json": values, "text/plain": str(values)},
    }
    cell = {"cell_type": "code", "id": "c1", "metadata": {}, "source": "", "outputs": [output]}
    cell["execution_count"] = 1
    notebook = {"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    blob = base64.b64encode(gzip.compress(json.dumps(notebook).encode())).decode()
    return f"start\n----- ENVPACK RESULT BEGIN -----\n{blob}\n----- ENVPACK RESULT END -----\n"


def member_pod(name: str, index: int, phase: str, exit_code: int | None = None) -> dict[str, Any]:
    pod = pod_obj(name, phase, exit_code=exit_code)
    pod["metadata"]["annotations"] = {"batch.kubernetes.io/job-completion-index": str(index)}
    if exit_code is not None:
        terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        terminated.update(startedAt=stamp(12), finishedAt=stamp(2))
    return pod
