"""A sweep as one Swarm replicated job with six tasks on the worker node (.ci/swarm-up)."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from jupyter_envpack.cluster.base import JobSpec
from jupyter_envpack.cluster.registry import push_image
from jupyter_envpack.cluster.swarm import SwarmBackend
from jupyter_envpack.cluster.swarm_sweep import follow_swarm_sweep, submit_sweep
from jupyter_envpack.execute.parameters import parameters_cell_source
from jupyter_envpack.execute.sweep import sweep_rows, write_summary

pytestmark = [pytest.mark.docker, pytest.mark.swarm, pytest.mark.registry]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
REGISTRY = os.environ.get("ENVPACK_TEST_REGISTRY", "127.0.0.1:5000")
LABEL = "org.jupyter.envpack"
FAKE_RUNNER = Path(__file__).parent / "cluster_fake_runner"


@pytest.fixture
def swarm_job(docker_client: Any, test_base_image: str) -> Iterator[JobSpec]:
    swarm = docker_client.info().get("Swarm") or {}
    if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
        if IN_CI:
            pytest.fail("no swarm manager (CI runs .ci/swarm-up)")
        pytest.skip("no swarm manager; run `bash .ci/swarm-up`")
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(FAKE_RUNNER.iterdir())))
    local = f"envpack/fake-runner:{digest.hexdigest()[:20]}"
    docker_client.images.build(
        path=str(FAKE_RUNNER), tag=local, rm=True, forcerm=True, buildargs={"BASE": test_base_image}
    )
    image = push_image(local, REGISTRY, client=docker_client).reference
    tag = uuid.uuid4().hex[:10]
    yield JobSpec(
        job_id=tag, name=f"t-{tag}", image=image, labels={f"{LABEL}.test": tag}, memory=256 * 2**20
    )
    for service in docker_client.services.list(filters={"label": f"{LABEL}.test={tag}"}):
        service.remove()


def test_a_sweep_is_one_swarm_job_with_one_task_per_row(swarm_job: JobSpec, tmp_path: Path) -> None:
    backend = SwarmBackend(constraints=("node.role==worker",))
    rows = sweep_rows(["exit_code=0,3", "sleep=0..2"])
    cells = [parameters_cell_source(row) for row in rows]
    handle = submit_sweep(backend, backend._with_defaults(swarm_job), cells, max_parallel=2)
    mode = backend.client.api.inspect_service(handle)["Spec"]["Mode"]["ReplicatedJob"]
    assert mode == {"MaxConcurrent": 2, "TotalCompletions": 6}
    runs = follow_swarm_sweep(
        backend, handle, rows, folder=tmp_path / "nbs", stem="fake", timeout=600, poll=1
    )
    assert [r.state for r in runs] == ["succeeded"] * 3 + ["failed"] * 3  # no member stops another
    from jupyter_envpack.cluster.sweeps import member_states, summarize

    states = member_states("swarm", backend, handle, len(rows))  # what `jobs --members` shows
    assert [states[i].state.value for i in range(len(rows))] == [r.state for r in runs]
    assert summarize(states, len(rows)).message == "3 succeeded, 3 failed"
    from types import SimpleNamespace

    from jupyter_envpack.cluster.base import RESULT_BEGIN
    from jupyter_envpack.cluster.sweeps import member_log

    record = SimpleNamespace(
        id="s", backend="swarm", handle=handle, options={"sweep": {"members": 6}}
    )
    log = member_log(record, backend, 4)  # `logs ID --member 4`: that run's own log
    assert RESULT_BEGIN in log
    assert '{"envpack": "exit", "code": 3}' in log
    for run in runs:
        executed = nbformat.read(run.output or "", as_version=4)
        source = executed.cells[0].source  # the fake runner echoes its parameters cell
        assert f"exit_code = {run.parameters['exit_code']}" in source
        assert f"sleep = {run.parameters['sleep']}" in source
        assert "uid=1000" in executed.cells[0].outputs[0]["text"]
    text = write_summary(tmp_path / "summary.csv", runs).read_text()
    assert text.count("\n") == 7 and text.count("a cell raised an exception") == 3
