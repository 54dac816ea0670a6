"""Docker Swarm jobs on a real two-node swarm (.ci/swarm-up): manager = the machine's engine,
worker = a second dockerd in its own network namespace. Jobs are constrained to the worker, pull
from the registry, and their executed notebooks come back through the log stream.

Most tests use a *fake runner* image (tests/integration/cluster_fake_runner, labelled
``org.jupyter.envpack.fake-runner``): it honours the runner contract (parameters env var, result
markers, exit codes) and lets the tests choose sleep, exit code and result size. The end-to-end
test at the bottom submits a real envpack image built by the core.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from jupyter_envpack.cluster.base import JobSpec, JobState, fetch_result, wait_for
from jupyter_envpack.cluster.jobs import JobIndex, SubmitOptions, submit
from jupyter_envpack.cluster.registry import push_image
from jupyter_envpack.cluster.swarm import SwarmBackend
from jupyter_envpack.errors import ClusterError

pytest_plugins = ["pytest_jupyter.jupyter_server"]
pytestmark = [pytest.mark.docker, pytest.mark.swarm, pytest.mark.registry]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
REGISTRY = os.environ.get("ENVPACK_TEST_REGISTRY", "127.0.0.1:5000")
LABEL = "org.jupyter.envpack"
WORKER = "envpack-worker1"
WORKER_SOCKET = "unix:///run/envpack-worker1.sock"
WORKER_PIDFILE = Path("/run/envpack-worker1/dockerd.pid")
SWARM_UP = Path(__file__).resolve().parents[2] / ".ci" / "swarm-up"
FAKE_RUNNER = Path(__file__).parent / "cluster_fake_runner"
ON_WORKER = ("node.role==worker",)


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} (CI runs .ci/swarm-up)")
    pytest.skip(f"{what}; run `bash .ci/swarm-up`")


def worker_node(client: Any) -> Any:
    nodes = [n for n in client.nodes.list() if n.attrs["Description"]["Hostname"] == WORKER]
    return nodes[0] if nodes else None


def wait_worker_ready(client: Any, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        node = worker_node(client)
        if node is not None and node.attrs["Status"]["State"] == "ready":
            return
        time.sleep(1)
    raise AssertionError(f"{WORKER} is not ready after {timeout} s")


def _worker_answers() -> bool:
    """The node list lags a dead worker by ~10 s; its own socket tells at once."""
    import docker

    try:
        client = docker.DockerClient(base_url=WORKER_SOCKET, timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _swarm_ready(client: Any) -> bool:
    info = client.info().get("Swarm") or {}
    node = worker_node(client) if info.get("ControlAvailable") else None
    return (
        info.get("LocalNodeState") == "active"
        and node is not None
        and node.attrs["Status"]["State"] == "ready"
        and _worker_answers()
    )


def ensure_swarm(client: Any) -> None:
    """The two-node swarm, brought (back) up with the idempotent .ci/swarm-up when needed (other
    work on a shared machine may stop the worker); fails under CI, skips elsewhere."""
    if not _swarm_ready(client) and os.geteuid() == 0:
        subprocess.run(
            ["bash", str(SWARM_UP)],
            check=False,
            timeout=300,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with contextlib.suppress(AssertionError):
            wait_worker_ready(client, timeout=30)
    if not _swarm_ready(client):
        _missing(f"no swarm manager with a ready worker node {WORKER}")


@pytest.fixture(scope="module")
def swarm(docker_client: Any) -> Any:
    ensure_swarm(docker_client)
    return docker_client


@pytest.fixture(scope="module")
def fake_image(swarm: Any, test_base_image: str) -> str:
    """The fake-runner image, pushed to the registry every node pulls from."""
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(FAKE_RUNNER.iterdir())))
    local = f"envpack/fake-runner:{digest.hexdigest()[:20]}"
    swarm.images.build(
        path=str(FAKE_RUNNER), tag=local, rm=True, forcerm=True, buildargs={"BASE": test_base_image}
    )
    return push_image(local, REGISTRY, client=swarm).reference


@pytest.fixture
def backend(swarm: Any) -> SwarmBackend:
    return SwarmBackend(client=swarm, constraints=ON_WORKER)


@pytest.fixture
def job(request: pytest.FixtureRequest, swarm: Any, fake_image: str) -> Iterator[JobSpec]:
    """A job spec unique to this test; its services are removed afterwards (by label)."""
    tag = uuid.uuid4().hex[:10]
    yield JobSpec(
        job_id=tag,
        name=f"t-{tag}",
        image=fake_image,
        notebook="fake.ipynb",
        labels={f"{LABEL}.test": tag},
        cpu=0.5,
        memory=256 * 2**20,
        memory_request=64 * 2**20,
    )
    for service in swarm.services.list(filters={"label": f"{LABEL}.test={tag}"}):
        with contextlib.suppress(Exception):
            service.remove()


def run_until(backend: SwarmBackend, handle: str, state: JobState, timeout: float = 90) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = backend.status(handle)
        if status.state is state or status.terminal:
            return status
        time.sleep(0.5)
    raise AssertionError(f"{handle} not {state.value} after {timeout} s: {status}")


@pytest.mark.reliability("I1")
def test_job_runs_on_the_worker_and_its_notebook_comes_back(
    backend: SwarmBackend, job: JobSpec, swarm: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = uuid.uuid4().hex
    monkeypatch.setenv("JUPYTER_TOKEN", canary)  # must never reach the job (E6)
    spec = replace(job, parameters_cell="answer = 42\n")
    handle = backend.submit(spec)
    status = wait_for(backend, handle, timeout=120, poll=0.5)
    assert status.state is JobState.SUCCEEDED, status
    assert status.node == WORKER and status.exit_code == 0
    notebook = json.loads(fetch_result(backend, handle))
    cell = notebook["cells"][0]
    assert cell["source"] == "answer = 42\n"
    assert "uid=1000" in cell["outputs"][0]["text"]

    service = swarm.services.get(handle).attrs["Spec"]
    task = service["TaskTemplate"]
    assert service["Mode"] == {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}}
    assert task["RestartPolicy"]["Condition"] == "none"
    assert task["Placement"]["Constraints"] == list(ON_WORKER)
    assert task["Resources"]["Limits"] == {
        "NanoCPUs": 500_000_000,
        "MemoryBytes": 256 * 2**20,
        "Pids": 1024,
    }
    assert task["Resources"]["Reservations"] == {"MemoryBytes": 64 * 2**20}
    assert task["ContainerSpec"]["User"] == "1000:1000"
    assert task["ContainerSpec"]["CapabilityDrop"] == ["ALL"]
    assert service["Labels"][f"{LABEL}.kind"] == "job"
    assert service["Labels"][f"{LABEL}.job"] == spec.job_id
    assert canary not in json.dumps(service)
    # the limits reached the container on the worker (H9)
    import docker

    (done,) = swarm.services.get(handle).tasks()
    worker = docker.DockerClient(base_url=WORKER_SOCKET, timeout=10)
    try:
        host = worker.api.inspect_container(done["Status"]["ContainerStatus"]["ContainerID"])[
            "HostConfig"
        ]
    finally:
        worker.close()
    assert (host["PidsLimit"], host["Memory"], host["NanoCpus"]) == (1024, 256 * 2**20, 500_000_000)
    assert host["CapDrop"] == ["ALL"] and not host["Privileged"] and not host.get("Binds")
    assert sorted(e.split("=")[0] for e in task["ContainerSpec"]["Env"]) == [
        "ENVPACK_PARAMETERS_CELL",
        "HOME",
    ]

    backend.cancel(handle)
    assert backend.status(handle).state is JobState.LOST  # the service is gone
    backend.cancel(handle)  # twice is fine


def test_resubmitting_attaches_to_the_same_service(backend: SwarmBackend, job: JobSpec) -> None:
    first = backend.submit(replace(job, parameters_cell="sleep = 30\n"))
    assert backend.submit(replace(job, parameters_cell="sleep = 30\n")) == first


@pytest.mark.parametrize(("code", "reason"), [(3, "cell-error"), (5, "kernel-died")])
def test_notebook_failures_keep_their_meaning(
    backend: SwarmBackend, job: JobSpec, code: int, reason: str
) -> None:
    handle = backend.submit(replace(job, parameters_cell=f"exit_code = {code}\n"))
    status = wait_for(backend, handle, timeout=120, poll=0.5)
    assert (status.state, status.reason, status.exit_code) == (JobState.FAILED, reason, code)
    assert json.loads(fetch_result(backend, handle))["nbformat"] == 4  # still fetched


@pytest.mark.reliability("I1")
def test_a_worker_engine_is_refused_clearly(swarm: Any, job: JobSpec) -> None:
    import docker

    worker = docker.DockerClient(base_url=WORKER_SOCKET, timeout=10)
    try:
        with pytest.raises(ClusterError, match="worker, not a manager") as info:
            SwarmBackend(client=worker).submit(job)
        assert "manager" in (info.value.hint or "")
    finally:
        worker.close()


def test_unsatisfiable_placement_is_pending_with_a_reason_and_waiting_ends(
    backend: SwarmBackend, job: JobSpec
) -> None:
    handle = backend.submit(replace(job, constraints=("node.hostname==no-such-node",)))
    time.sleep(3)
    status = backend.status(handle)
    assert status.state is JobState.PENDING
    assert "no suitable node" in status.message
    started = time.monotonic()
    with pytest.raises(ClusterError, match="did not finish"):
        wait_for(backend, handle, timeout=3, poll=0.5)
    assert time.monotonic() - started < 10


def test_swarm_deadline_is_enforced(backend: SwarmBackend, job: JobSpec) -> None:
    handle = backend.submit(replace(job, parameters_cell="sleep = 120\n", deadline=4))
    status = wait_for(backend, handle, timeout=60, poll=0.5)
    assert (status.state, status.reason) == (JobState.FAILED, "deadline-exceeded")


def test_a_large_result_comes_back_through_the_log(backend: SwarmBackend, job: JobSpec) -> None:
    """4 MiB of incompressible output (≈ 7.5 MB of base64 log): the documented transport limit."""
    handle = backend.submit(replace(job, parameters_cell=f"payload = {4 * 2**20}\n"))
    assert wait_for(backend, handle, timeout=180, poll=1).state is JobState.SUCCEEDED
    started = time.monotonic()
    notebook = json.loads(fetch_result(backend, handle))
    assert len(notebook["cells"][0]["outputs"][0]["text"]) > 4 * 2**20
    assert time.monotonic() - started < 60


@pytest.mark.reliability("L6")
def test_a_gzip_bomb_result_stops_at_the_cap(backend: SwarmBackend, job: JobSpec) -> None:
    """2 GiB of zeros, gzipped into ~2 MB of log: decompression stops at 200 MiB."""
    import resource

    from jupyter_envpack.errors import ResultTooLargeError

    handle = backend.submit(replace(job, parameters_cell="bomb = 2\n"))
    assert wait_for(backend, handle, timeout=240, poll=1).state is JobState.SUCCEEDED
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ResultTooLargeError, match="larger than 200 MiB"):
        fetch_result(backend, handle)
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 400


@pytest.mark.reliability("L4")
def test_a_swarm_job_runs_with_a_read_only_root(
    backend: SwarmBackend, job: JobSpec, swarm: Any
) -> None:
    handle = backend.submit(job)
    assert wait_for(backend, handle, timeout=180, poll=1).state is JobState.SUCCEEDED
    spec = swarm.api.inspect_service(handle)["Spec"]["TaskTemplate"]
    assert spec["ContainerSpec"]["ReadOnly"] is True
    assert spec["Resources"]["Limits"]["Pids"] > 0


@pytest.mark.reliability("I2")
def test_draining_the_worker_never_hangs(backend: SwarmBackend, job: JobSpec, swarm: Any) -> None:
    """Docker 20.10 lets a running replicated-job task finish on a drained node; a job submitted
    while the only eligible node is drained waits with a reason, and following it times out."""
    running = backend.submit(replace(job, parameters_cell="sleep = 8\n"))
    assert run_until(backend, running, JobState.RUNNING).state is JobState.RUNNING
    node = worker_node(swarm)
    spec = node.attrs["Spec"]
    node.update({**spec, "Availability": "drain"})
    try:
        late = backend.submit(replace(job, job_id=job.job_id + "b", name=job.name + "b"))
        final = wait_for(backend, running, timeout=90, poll=1)
        assert final.terminal and final.state in (JobState.SUCCEEDED, JobState.LOST)
        waiting = backend.status(late)
        assert waiting.state is JobState.PENDING and "no suitable node" in waiting.message
        with pytest.raises(ClusterError, match="did not finish"):
            wait_for(backend, late, timeout=3, poll=0.5)
    finally:
        node.reload()
        node.update({**node.attrs["Spec"], "Availability": "active"})
    assert wait_for(backend, late, timeout=120, poll=1).state is JobState.SUCCEEDED


@pytest.mark.reliability("I2")
@pytest.mark.slow
def test_stopping_the_worker_mid_job_is_lost_not_running(
    backend: SwarmBackend, job: JobSpec, swarm: Any
) -> None:
    handle = backend.submit(replace(job, parameters_cell="sleep = 300\n"))
    assert run_until(backend, handle, JobState.RUNNING).state is JobState.RUNNING
    os.kill(int(WORKER_PIDFILE.read_text()), 15)  # SIGTERM: the worker's dockerd goes away
    try:
        started = time.monotonic()
        status = wait_for(backend, handle, timeout=90, poll=1)
        assert (status.state, status.reason) == (JobState.LOST, "node-lost")
        assert WORKER in status.message
        assert time.monotonic() - started < 60
        with pytest.raises(ClusterError, match="not reachable"):  # no hang, a clear reason
            fetch_result(backend, handle)
    finally:
        backend.cancel(handle)
        subprocess.run(["bash", str(SWARM_UP)], check=True, timeout=180)
        wait_worker_ready(swarm)


@pytest.mark.slow
def test_real_envpack_image_end_to_end(
    swarm: Any, shared_image: tuple[str, Path], tmp_path: Path
) -> None:
    """A real image from the core's build, pushed, run on the worker, result written back."""
    image, notebook = shared_image
    index = JobIndex(tmp_path / "jobs.sqlite")
    opts = SubmitOptions(
        backend="swarm",
        registry=REGISTRY,
        constraints=ON_WORKER,
        parameters={"greeting": "hi"},
        deadline=600,
        labels={f"{LABEL}.test": "e2e"},
        output=str(tmp_path / "out.ipynb"),
    )
    try:
        done = submit(str(notebook), opts, image=image, index=index, wait=True, client=swarm)
        assert done.status is not None and done.status.state is JobState.SUCCEEDED, done.status
        assert done.status.node == WORKER
        result = json.loads((tmp_path / "out.ipynb").read_text())
        sources = ["".join(c["source"]) for c in result["cells"]]
        assert any("greeting = 'hi'" in s for s in sources)
        assert any("import yaml" in s for s in sources)
        record = index.get(done.record.id)
        assert record.state == "succeeded" and record.image.startswith(REGISTRY + "/")
    finally:
        for service in swarm.services.list(filters={"label": f"{LABEL}.test=e2e"}):
            service.remove()


@pytest.fixture
def envpack_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("ENVPACK_JOBS_DB", str(tmp_path / "jobs.sqlite"))
    return {
        "registry": REGISTRY,
        "operation_kinds": {"job": "jupyter_envpack.cluster.operation:job_kind"},
    }


@pytest.mark.timeout(300)
async def test_a_job_operation_through_the_server_api(
    jp_fetch: Any, jp_root_dir: Path, fake_image: str, swarm: Any
) -> None:
    """POST /envpack/operations {kind: job} → Swarm job on the worker → notebook in the root."""
    import asyncio

    nb = jp_root_dir / "work" / "nb.ipynb"
    nb.parent.mkdir()
    nb.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}))
    body = {
        "kind": "job",
        "path": "work/nb.ipynb",
        "options": {
            "image": fake_image,
            "backend": "swarm",
            "constraints": list(ON_WORKER),
            "parameters": {"answer": 42},
            "output": "work/nb.job.ipynb",
            "deadline": 120,
        },
    }
    response = await jp_fetch("envpack", "operations", method="POST", body=json.dumps(body))
    op = json.loads(response.body)
    try:
        end = time.monotonic() + 180
        while op["state"] not in {"succeeded", "failed", "cancelled", "lost"}:
            assert time.monotonic() < end, op
            await asyncio.sleep(1)
            op = json.loads((await jp_fetch("envpack", "operations", op["id"])).body)
        assert op["state"] == "succeeded", op["error"]
        result = op["result"]
        assert result["node"] == WORKER and result["output_path"] == "work/nb.job.ipynb"
        assert result["job_id"] == op["id"][:12] and op["handle"]["handle"] == result["handle"]
        executed = json.loads((jp_root_dir / "work" / "nb.job.ipynb").read_text())
        assert "answer = 42" in executed["cells"][0]["source"]
        labels = swarm.services.get(result["handle"]).attrs["Spec"]["Labels"]
        assert labels["org.jupyter.envpack.operation"] == op["id"]
        assert str(jp_root_dir) not in json.dumps(op)
    finally:
        for service in swarm.services.list(
            filters={"label": f"org.jupyter.envpack.operation={op['id']}"}
        ):
            service.remove()


@pytest.mark.reliability("J7")
def test_prune_removes_only_finished_envpack_jobs(
    backend: SwarmBackend, job: JobSpec, swarm: Any, fake_image: str
) -> None:
    import docker.types

    finished = backend.submit(job)
    running = backend.submit(
        replace(job, job_id=job.job_id + "r", name=job.name + "r", parameters_cell="sleep = 60\n")
    )
    foreign = swarm.services.create(
        fake_image,
        name=f"foreign-{job.job_id}",
        labels={f"{LABEL}.test": job.labels[f"{LABEL}.test"]},
        mode=docker.types.ServiceMode("replicated-job"),
        restart_policy=docker.types.RestartPolicy(condition="none"),
        constraints=list(ON_WORKER),
    )
    try:
        assert wait_for(backend, finished, timeout=120, poll=0.5).state is JobState.SUCCEEDED
        assert wait_for(backend, foreign.id, timeout=120, poll=0.5).terminal
        run_until(backend, running, JobState.RUNNING)
        removed = backend.prune(max_age=0, only=f"{LABEL}.test={job.labels[LABEL + '.test']}")
        assert job.name in removed
        assert backend.status(finished).state is JobState.LOST  # gone
        assert backend.status(running).state is JobState.RUNNING  # still there
        swarm.services.get(foreign.id)  # not ours: untouched
    finally:
        foreign.remove()


def test_an_image_missing_from_the_registry_fails_clearly(
    backend: SwarmBackend, job: JobSpec
) -> None:
    handle = backend.submit(replace(job, image=f"{REGISTRY}/envpack/not-pushed:{job.job_id}"))
    status = wait_for(backend, handle, timeout=120, poll=0.5)
    assert (status.state, status.reason) == (JobState.FAILED, "image-pull-failed")
    assert "not-pushed" in status.message


@pytest.mark.reliability("J1")
def test_a_running_job_is_followed_again_after_a_server_crash(
    swarm: Any, fake_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a SIGKILLed server leaves: an operation row `running` with the job's handle, owned by
    nobody alive. A new manager on the same store follows the Swarm job to its end."""
    from jupyter_envpack.cluster.operation import job_kind
    from jupyter_envpack.config import EnvPack
    from jupyter_envpack.operations import Operation, OperationManager, OperationStore
    from jupyter_envpack.server.paths import ContentsPaths

    monkeypatch.setenv("ENVPACK_JOBS_DB", str(tmp_path / "jobs.sqlite"))
    root = tmp_path / "root"
    root.mkdir()
    (root / "nb.ipynb").write_text(
        json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []})
    )
    op_id = uuid.uuid4().hex
    labels = {"org.jupyter.envpack.operation": op_id}
    opts = SubmitOptions(
        backend="swarm",
        registry=REGISTRY,
        constraints=ON_WORKER,
        parameters={"sleep": 6},
        labels=labels,
        deadline=120,
    )
    handles: dict[str, Any] = {}

    def remember(record: Any) -> None:
        handles.update(
            job_id=record.id,
            backend=record.backend,
            handle=record.handle,
            options=record.options,
            image=record.image,
        )

    # the crashed server had submitted the job and stored its handle...
    submit(
        str(root / "nb.ipynb"),
        opts,
        image=fake_image,
        client=swarm,
        job_id=op_id[:12],
        on_record=remember,
        index=JobIndex(tmp_path / "jobs.sqlite"),
    )
    gone = subprocess.Popen(["true"])  # the crashed server's pid: reaped, so it no longer runs
    gone.wait()
    dead_pid = gone.pid
    store = OperationStore(tmp_path / "ops.sqlite")
    store.create(
        Operation(
            id=op_id,
            kind="job",
            path="nb.ipynb",
            state="running",
            options={"output": "nb.after-crash.ipynb"},
            handle=handles,
            owner=f"{socket.gethostname()}:{dead_pid}",
            attempt=1,
        )
    )
    manager = OperationManager(store, EnvPack(), ContentsPaths(root))
    manager.register_kind(job_kind)
    try:
        manager.start()  # reconcile → resume_job
        end = time.monotonic() + 120
        while (op := store.get(op_id)) is not None and not op.finished:
            assert time.monotonic() < end, op
            time.sleep(0.5)
        assert op is not None and op.state == "succeeded", op.error
        assert op.result["node"] == WORKER and op.result["output_path"] == "nb.after-crash.ipynb"
        assert json.loads((root / "nb.after-crash.ipynb").read_text())["cells"][0][
            "source"
        ].endswith("sleep = 6\n")
    finally:
        manager.shutdown()
        for service in swarm.services.list(
            filters={"label": f"org.jupyter.envpack.operation={op_id}"}
        ):
            service.remove()


@pytest.mark.timeout(300)
async def test_cancelling_a_job_operation_removes_the_swarm_service(
    jp_fetch: Any, jp_root_dir: Path, fake_image: str, swarm: Any
) -> None:
    import asyncio

    (jp_root_dir / "nb.ipynb").write_text(
        json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []})
    )
    body = {
        "kind": "job",
        "path": "nb.ipynb",
        "options": {
            "image": fake_image,
            "backend": "swarm",
            "constraints": list(ON_WORKER),
            "parameters": {"sleep": 120},
        },
    }
    op = json.loads(
        (await jp_fetch("envpack", "operations", method="POST", body=json.dumps(body))).body
    )
    label = {"label": f"org.jupyter.envpack.operation={op['id']}"}
    try:
        end = time.monotonic() + 120
        while not (
            op["handle"].get("handle") and op["message"] and op["message"].startswith("running")
        ):
            assert time.monotonic() < end and op["state"] in {"queued", "running"}, op
            await asyncio.sleep(0.5)
            op = json.loads((await jp_fetch("envpack", "operations", op["id"])).body)
        await jp_fetch("envpack", "operations", op["id"], method="DELETE")
        while op["state"] not in {"cancelled", "failed", "succeeded", "lost"}:
            assert time.monotonic() < end, op
            await asyncio.sleep(0.5)
            op = json.loads((await jp_fetch("envpack", "operations", op["id"])).body)
        assert op["state"] == "cancelled"
        assert swarm.services.list(filters=label) == []  # the job is gone from the cluster
    finally:
        for service in swarm.services.list(filters=label):
            service.remove()


def test_a_gpu_job_waits_for_a_node_that_advertises_gpus(
    backend: SwarmBackend, job: JobSpec
) -> None:
    """The generic-resource request is real: this swarm's nodes advertise no NVIDIA-GPU, so
    Swarm accepts the spec and keeps the task pending for lack of one (never runs it GPU-less)."""
    handle = backend.submit(replace(job, gpus=1))
    service = backend.client.services.get(handle)
    wanted = service.attrs["Spec"]["TaskTemplate"]["Resources"]["Reservations"]
    assert wanted["GenericResources"] == [
        {"DiscreteResourceSpec": {"Kind": "NVIDIA-GPU", "Value": 1}}
    ]
    time.sleep(3)
    status = backend.status(handle)
    assert status.state is JobState.PENDING, status
    assert "insufficient resources" in status.message
