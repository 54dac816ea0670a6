"""The Kubernetes client flow against a scripted API server (no cluster can run here).

pytest-httpserver plays the API server: create, 409 on create, 503s then success, a handler that
sleeps past ``_request_timeout``, a closed port, ``410 Gone`` on watch, pods stuck in
``ImagePullBackOff``, and a pod evicted (``DisruptionTarget``) before a second one succeeds.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import time
from dataclasses import replace
from typing import Any

import kubernetes
import kubernetes_validate
import pytest
from k8s_fake import (  # the scripted API server and its objects
    HANDLE,
    JOBS,
    NS,
    PODS,
    SPEC,
    api_server,
    backend_for,
    fake,
    job_obj,
    pod_list,
    pod_obj,
    serve_state,
    stamp,
    write_kubeconfig,
)
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from jupyter_envpack.cluster.base import JobSpec, JobState
from jupyter_envpack.cluster.kubernetes import KubernetesBackend
from jupyter_envpack.errors import ClusterError, InputError

pytestmark = pytest.mark.k8s_fake
__all__ = ["api_server", "fake"]  # fixtures, used by name


@pytest.mark.reliability("I3")
def test_create_sends_a_valid_job_and_409_attaches(fake: HTTPServer) -> None:
    bodies: list[dict[str, Any]] = []

    def created(request: Request) -> Response:
        bodies.append(json.loads(request.get_data()))
        return Response(json.dumps(job_obj()), 201, content_type="application/json")

    fake.expect_ordered_request(JOBS, method="POST").respond_with_handler(created)
    fake.expect_ordered_request(JOBS, method="POST").respond_with_json(
        {"kind": "Status", "code": 409, "reason": "AlreadyExists"}, status=409
    )
    backend = backend_for(fake)
    assert backend.submit(SPEC) == HANDLE
    assert backend.submit(SPEC) == HANDLE  # resubmission attaches instead of failing
    fake.check_assertions()
    kubernetes_validate.validate(bodies[0], "1.30.0", strict=True)
    assert bodies[0]["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


@pytest.mark.reliability("I3")
def test_transient_503s_are_retried_then_succeed(fake: HTTPServer) -> None:
    for _ in range(2):
        fake.expect_ordered_request(JOBS, method="POST").respond_with_json(
            {"kind": "Status", "code": 503}, status=503
        )
    fake.expect_ordered_request(JOBS, method="POST").respond_with_json(job_obj(), status=201)
    assert backend_for(fake).submit(SPEC) == HANDLE
    assert len(fake.log) == 3


@pytest.mark.reliability("I3")
def test_forbidden_create_is_a_clear_failure(fake: HTTPServer) -> None:
    fake.expect_request(JOBS, method="POST").respond_with_json(
        {"kind": "Status", "code": 403, "reason": "Forbidden"}, status=403
    )
    with pytest.raises(ClusterError, match="403") as info:
        backend_for(fake).submit(SPEC)
    assert "RBAC" in (info.value.hint or "")
    assert len(fake.log) == 1  # 403 is not retried


@pytest.mark.reliability("I3")
def test_a_hung_api_server_times_out(fake: HTTPServer) -> None:
    def hang(request: Request) -> Response:
        time.sleep(4)
        return Response("{}", 200, content_type="application/json")

    fake.expect_request(f"{JOBS}/{SPEC.name}", method="GET").respond_with_handler(hang)
    backend = backend_for(fake, request_timeout=(1.0, 1.0), retry_budget=0.0)
    started = time.monotonic()
    with pytest.raises(ClusterError, match="not reachable"):
        # the caller's None is overridden: every call carries the backend's timeout
        backend.call(backend._batch().read_namespaced_job, SPEC.name, NS, _request_timeout=None)
    assert time.monotonic() - started < 3


@pytest.mark.reliability("I3")
def test_unreachable_api_server_fails_within_the_retry_budget() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens
    cfg = kubernetes.client.Configuration()
    cfg.host = f"http://127.0.0.1:{port}"
    cfg.retries = False
    backend = KubernetesBackend(
        namespace=NS, api_client=kubernetes.client.ApiClient(cfg), retry_budget=1.5
    )
    started = time.monotonic()
    with pytest.raises(ClusterError, match="not reachable"):
        backend.submit(SPEC)
    assert time.monotonic() - started < 5


@pytest.mark.reliability("I5")
@pytest.mark.parametrize(
    ("waiting", "age", "state", "reason"),
    [
        ("ImagePullBackOff", 300, JobState.FAILED, "image-pull-failed"),
        ("ErrImagePull", 300, JobState.FAILED, "image-pull-failed"),
        ("ImagePullBackOff", 1, JobState.PENDING, "ImagePullBackOff"),  # within the grace period
        ("CreateContainerConfigError", 1, JobState.FAILED, "bad-container-config"),
        ("ContainerCreating", 1, JobState.PENDING, "ContainerCreating"),
    ],
)
def test_waiting_reasons_become_clear_states(
    fake: HTTPServer, waiting: str, age: float, state: JobState, reason: str
) -> None:
    serve_state(fake, job_obj(), pod_list(pod_obj("p1", "Pending", waiting=waiting, age=age)))
    status = backend_for(fake, pull_grace=60).status(HANDLE)
    assert (status.state, status.reason) == (state, reason)
    if state is JobState.FAILED:
        assert waiting in status.message


@pytest.mark.parametrize(
    ("conditions", "pods", "expected"),
    [
        (
            [{"type": "Complete", "status": "True"}],
            [pod_obj("p1", "Succeeded", exit_code=0)],
            (JobState.SUCCEEDED, "completed"),
        ),
        (
            [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}],
            [pod_obj("p1", "Failed", exit_code=3)],
            (JobState.FAILED, "cell-error"),
        ),
        (
            [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}],
            [pod_obj("p1", "Failed", exit_code=137)],
            (JobState.FAILED, "deadline-exceeded"),
        ),
        (
            [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}],
            [],
            (JobState.FAILED, "job-failed"),
        ),
        ([], [pod_obj("p1", "Running")], (JobState.RUNNING, "running")),
        ([], [], (JobState.PENDING, "no-pod")),
    ],
)
def test_job_conditions_map_to_states(
    fake: HTTPServer,
    conditions: list[dict[str, str]],
    pods: list[dict[str, Any]],
    expected: tuple[JobState, str],
) -> None:
    serve_state(fake, job_obj(conditions), pod_list(*pods))
    status = backend_for(fake).status(HANDLE)
    assert (status.state, status.reason) == expected


def test_a_deleted_job_is_lost_and_cancel_tolerates_404(fake: HTTPServer) -> None:
    fake.expect_request(f"{JOBS}/{SPEC.name}", method="GET").respond_with_json(
        {"kind": "Status", "code": 404}, status=404
    )
    fake.expect_request(f"{JOBS}/{SPEC.name}", method="DELETE").respond_with_json(
        {"kind": "Status", "code": 404}, status=404
    )
    backend = backend_for(fake)
    assert backend.status(HANDLE).state is JobState.LOST
    backend.cancel(HANDLE)  # already gone: fine


def test_cancel_deletes_the_pods_first(fake: HTTPServer) -> None:
    """Foreground: the Job stays (being deleted) until its pods are gone, and reads cancelled."""
    seen: list[dict[str, Any]] = []

    def deleted(request: Request) -> Response:
        seen.append(json.loads(request.get_data()))
        return Response(
            json.dumps({"kind": "Status", "status": "Success"}),
            200,
            content_type="application/json",
        )

    fake.expect_request(f"{JOBS}/{SPEC.name}", method="DELETE").respond_with_handler(deleted)
    backend_for(fake).cancel(HANDLE)
    assert seen[0]["propagationPolicy"] == "Foreground"
    deleting = job_obj()
    deleting["metadata"]["deletionTimestamp"] = stamp()
    serve_state(fake, deleting, pod_list(pod_obj("p1", "Running")))
    status = backend_for(fake).status(HANDLE)
    assert (status.state, status.reason) == (JobState.CANCELLED, "deleting")


@pytest.mark.reliability("I3")
def test_watch_restarts_after_410_gone(fake: HTTPServer) -> None:
    watches: list[dict[str, str]] = []
    expired = {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "reason": "Expired",
            "message": "too old resource version",
            "code": 410,
        },
    }
    modified = {"type": "MODIFIED", "object": job_obj(rv="42")}

    def watch(request: Request) -> Response:
        watches.append(dict(request.args))
        event = expired if len(watches) == 1 else modified
        return Response(json.dumps(event) + "\n", 200, content_type="application/json")

    running = pod_list(pod_obj("p1", "Running"))
    serve_state(fake, job_obj(rv="5"), running)
    fake.expect_request(JOBS, method="GET").respond_with_handler(watch)
    serve_state(fake, job_obj(rv="6"), running)
    serve_state(
        fake,
        job_obj([{"type": "Complete", "status": "True"}]),
        pod_list(pod_obj("p1", "Succeeded", exit_code=0)),
    )
    status = backend_for(fake).wait(HANDLE, timeout=20, watch_seconds=2)
    assert status.state is JobState.SUCCEEDED
    assert len(watches) == 2
    assert "resourceVersion" not in watches[0]
    assert watches[1]["resourceVersion"] == "0"  # restarted from "any" after 410
    assert all(w["fieldSelector"] == f"metadata.name={SPEC.name}" for w in watches)
    assert all(w["watch"] == "true" and w["timeoutSeconds"] == "2" for w in watches)


@pytest.mark.reliability("I6")
def test_evicted_pod_then_success_is_one_success_with_the_right_log(fake: HTTPServer) -> None:
    evicted = pod_obj(
        "p1",
        "Failed",
        exit_code=137,
        age=30,
        conditions=[
            {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}
        ],
    )
    states = []
    serve_state(fake, job_obj(), pod_list(pod_obj("p1", "Running", age=30)))
    serve_state(
        fake,
        job_obj(),
        pod_list(evicted, pod_obj("p2", "Pending", age=1, waiting="ContainerCreating")),
    )
    serve_state(
        fake,
        job_obj([{"type": "Complete", "status": "True"}]),
        pod_list(evicted, pod_obj("p2", "Succeeded", exit_code=0, age=1)),
    )
    backend = backend_for(fake)
    for _ in range(3):
        states.append(backend.status(HANDLE).state)
    assert states == [JobState.RUNNING, JobState.PENDING, JobState.SUCCEEDED]

    notebook = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    blob = base64.b64encode(gzip.compress(json.dumps(notebook).encode())).decode()
    log = f"start\n----- ENVPACK RESULT BEGIN -----\n{blob}\n----- ENVPACK RESULT END -----\n"
    fake.expect_request(PODS, method="GET").respond_with_json(
        pod_list(evicted, pod_obj("p2", "Succeeded", exit_code=0, age=1))
    )
    fake.expect_request(f"{PODS}/p2/log", method="GET").respond_with_data(log)
    text = backend.logs(HANDLE)
    assert text == log  # the succeeded pod's log, not the evicted one's
    inner = text.split("BEGIN -----\n")[1].split("\n-----")[0]
    assert json.loads(gzip.decompress(base64.b64decode(inner))) == notebook


def test_cronjob_submit_and_status(fake: HTTPServer) -> None:
    cron_spec = JobSpec(
        **{**SPEC.__dict__, "name": "analysis-cron-01", "schedule": "0 6 * * *", "timezone": "UTC"}
    )
    path = f"/apis/batch/v1/namespaces/{NS}/cronjobs"
    cron = {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "analysis-cron-01", "namespace": NS},
        "spec": {
            "schedule": "0 6 * * *",
            "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "notebook"}]}}}},
        },
        "status": {},
    }
    fake.expect_request(path, method="POST").respond_with_json(cron, status=201)
    fake.expect_request(f"{path}/analysis-cron-01", method="GET").respond_with_json(cron)
    backend = backend_for(fake)
    handle = backend.submit(cron_spec)
    assert handle == f"{NS}/cronjob/analysis-cron-01"
    status = backend.status(handle)
    assert status.reason == "scheduled" and "0 6 * * *" in status.message
    with pytest.raises(InputError):
        backend.wait(handle, timeout=1)


def test_render_contacts_nothing() -> None:
    backend = KubernetesBackend(namespace=NS, api_client=object())
    (manifest,) = backend.render(SPEC)
    assert manifest["kind"] == "Job" and manifest["metadata"]["namespace"] == NS


@pytest.mark.parametrize("handle", ["job/x", "ns/pod/x", "ns//x", "a/b/c/d"])
def test_bad_handles_are_input_errors(handle: str) -> None:
    with pytest.raises(InputError):
        KubernetesBackend(api_client=object()).status(handle)


def test_the_kubeconfig_file_and_its_context_namespace_are_used(
    fake: HTTPServer, tmp_path: Any
) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "lab",
                "clusters": [{"name": "c", "cluster": {"server": fake.url_for("").rstrip("/")}}],
                "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
                "contexts": [
                    {"name": "lab", "context": {"cluster": "c", "user": "u", "namespace": NS}}
                ],
            }
        )
    )
    seen: list[str] = []

    def created(request: Request) -> Response:
        seen.append(request.headers.get("Authorization", ""))
        return Response(json.dumps(job_obj()), 201, content_type="application/json")

    fake.expect_request(JOBS, method="POST").respond_with_handler(created)
    backend = KubernetesBackend(kubeconfig=str(kubeconfig))
    assert backend.submit(SPEC) == HANDLE  # the namespace came from the context
    assert seen == ["Bearer not-a-real-token"]


def test_no_kubernetes_configuration_is_a_clear_error(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    backend = KubernetesBackend(kubeconfig=str(tmp_path / "missing"))
    with pytest.raises(ClusterError, match="no Kubernetes configuration") as info:
        backend.status(HANDLE)
    assert "KUBECONFIG" in (info.value.hint or "")


def test_cli_submit_jobs_logs_against_the_fake_api(
    fake: HTTPServer,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The CLI end to end over HTTP: submit (no build, no push: the image is in the registry),
    then `jobs` and `logs` in later invocations find the job through the local index."""
    from jupyter_envpack.cli import main

    monkeypatch.setenv("ENVPACK_JOBS_DB", str(tmp_path / "jobs.sqlite"))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "no-config"))
    kubeconfig = write_kubeconfig(tmp_path, fake)
    nb = tmp_path / "analysis.ipynb"
    nb.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}))
    created: list[dict[str, Any]] = []

    def create(request: Request) -> Response:
        created.append(json.loads(request.get_data()))
        return Response(json.dumps(job_obj()), 201, content_type="application/json")

    fake.expect_request(JOBS, method="POST").respond_with_handler(create)
    code = main(
        [
            "submit",
            "-q",
            str(nb),
            "--backend",
            "kubernetes",
            "--namespace",
            NS,
            "--kubeconfig",
            str(kubeconfig),
            "--registry",
            "127.0.0.1:5000",
            "--image",
            "127.0.0.1:5000/envpack/analysis:1",
            "-p",
            "n",
            "7",
        ]
    )
    job_id = capsys.readouterr().out.strip()
    assert code == 0 and len(job_id) == 12
    name = created[0]["metadata"]["name"]
    env = created[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {
        "name": "ENVPACK_PARAMETERS_CELL",
        "value": "# Parameters injected by jupyter-envpack\nn = 7\n",
    } in env

    done = job_obj([{"type": "Complete", "status": "True"}])
    done["metadata"]["name"] = name
    fake.expect_request(f"{JOBS}/{name}", method="GET").respond_with_json(done)
    fake.expect_request(PODS, method="GET").respond_with_json(
        pod_list(pod_obj("p1", "Succeeded", exit_code=0))
    )
    fake.expect_request(f"{PODS}/p1/log", method="GET").respond_with_data("hello from the pod\n")
    assert main(["jobs", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["state"], listed["handle"]) == ("succeeded", f"{NS}/job/{name}")
    assert main(["logs", job_id]) == 0
    assert capsys.readouterr().out == "hello from the pod\n"


def test_forbidden_pod_listing_is_a_clear_error(fake: HTTPServer) -> None:
    fake.expect_request(f"{JOBS}/{SPEC.name}", method="GET").respond_with_json(job_obj())
    fake.expect_request(PODS, method="GET").respond_with_json(
        {"kind": "Status", "code": 403, "reason": "Forbidden"}, status=403
    )
    with pytest.raises(ClusterError, match="403") as info:
        backend_for(fake).status(HANDLE)
    assert "RBAC" in (info.value.hint or "")


def test_pods_without_a_creation_time_still_sort(fake: HTTPServer) -> None:
    young = pod_obj("p2", "Running")
    unknown = pod_obj("p1", "Failed", exit_code=137)
    del unknown["metadata"]["creationTimestamp"]
    serve_state(fake, job_obj(), pod_list(young, unknown))
    status = backend_for(fake).status(HANDLE)
    assert status.state is JobState.RUNNING and "p2" in status.message


def test_the_gpu_node_pool_comes_from_c_envpack_backend_options() -> None:
    from jupyter_envpack.cluster.jobs import open_backend
    from jupyter_envpack.config import EnvPack

    pool = {
        "gpu_node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
        "gpu_tolerations": [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ],
    }
    config = EnvPack(backend_options={"kubernetes": pool})
    backend = open_backend("kubernetes", {"namespace": NS}, config)
    (job,) = backend.render(replace(SPEC, gpus=1))
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == pool["gpu_node_selector"]
    assert pod["tolerations"] == pool["gpu_tolerations"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    kubernetes_validate.validate(job, "1.30.0", strict=True)
