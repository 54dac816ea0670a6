"""Slurm jobs on a real one-node Slurm 22.05 cluster (.ci/slurm-up), runtimes docker and podman.

Images come from the local registry, as on a real cluster. Most tests use the fake-runner image
(tests/integration/cluster_fake_runner: it honours the runner contract and sleeps or exits as
its parameters say); the first one runs a real envpack image built by the core. Apptainer is not
packaged for this distribution: its script is only checked as text (tests/unit/cluster/test_cluster_slurm_script.py).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from jupyter_envpack.cluster.base import JobSpec, JobState, fetch_result, wait_for
from jupyter_envpack.cluster.jobs import JobIndex, SubmitOptions, backend_of, refresh, submit
from jupyter_envpack.cluster.registry import push_image
from jupyter_envpack.cluster.slurm import SlurmBackend
from jupyter_envpack.config import EnvPack

pytestmark = [pytest.mark.docker, pytest.mark.registry, pytest.mark.slurm]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
REGISTRY = os.environ.get("ENVPACK_TEST_REGISTRY", "127.0.0.1:5000")
PODMAN_URL = os.environ.get("ENVPACK_TEST_PODMAN_URL", "unix:///run/podman/podman.sock")
LABEL = "org.jupyter.envpack"
FAKE_RUNNER = Path(__file__).parent / "cluster_fake_runner"


def _missing(what: str, script: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} (CI runs {script})")
    pytest.skip(f"{what}; run `bash {script}`")


@pytest.fixture(scope="module")
def slurm() -> None:
    done = (
        subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
        if shutil.which("sinfo")
        else None
    )
    if done is None or done.returncode != 0 or not done.stdout.strip():
        _missing("no Slurm controller answers", ".ci/slurm-up")


@pytest.fixture(scope="module")
def fake_image(docker_client: Any, test_base_image: str) -> str:
    """The fake-runner image, pushed to the registry the node pulls from."""
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sorted(FAKE_RUNNER.iterdir())))
    local = f"envpack/fake-runner:{digest.hexdigest()[:20]}"
    docker_client.images.build(
        path=str(FAKE_RUNNER), tag=local, rm=True, forcerm=True, buildargs={"BASE": test_base_image}
    )
    return push_image(local, REGISTRY, client=docker_client).reference


@pytest.fixture
def job(fake_image: str, slurm: None) -> Iterator[JobSpec]:
    tag = uuid.uuid4().hex[:12]
    yield JobSpec(job_id=tag, name=f"t-{tag}", image=fake_image, notebook="fake.ipynb")
    subprocess.run(["scancel", "-n", f"t-{tag}"], capture_output=True, timeout=30)


def _containers(engine: str, job_id: str) -> list[str]:
    argv = ["docker"] if engine == "docker" else ["podman"]
    done = subprocess.run(
        [*argv, "ps", "-aq", "--filter", f"label={LABEL}.job={job_id}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout.split()


def _params(**values: Any) -> str:
    return "".join(f"{k} = {v!r}\n" for k, v in values.items())


@pytest.mark.reliability("I1")
def test_a_real_notebook_runs_as_a_slurm_job_and_comes_back(
    slurm: None, shared_image: tuple[str, Path], docker_client: Any, tmp_path: Path
) -> None:
    image, path = shared_image
    reference = push_image(image, REGISTRY, client=docker_client).reference
    backend = SlurmBackend(runtime="docker", output_dir=str(tmp_path / "out"))
    tag = uuid.uuid4().hex[:12]
    spec = JobSpec(
        job_id=tag,
        name=f"t-{tag}",
        image=reference,
        notebook=path.name,
        parameters_cell=_params(alpha=0.25),
        memory=512 * 2**20,
        cpu=1,
    )
    handle = backend.submit(spec)
    assert backend.submit(spec) == handle  # the same job again attaches
    status = wait_for(backend, handle, timeout=300, poll=1)
    assert status.state is JobState.SUCCEEDED, backend.logs(handle)
    assert status.node and status.exit_code == 0
    executed = nbformat.reads(fetch_result(backend, handle), as_version=4)
    assert "alpha = 0.25" in executed.cells[0].source  # the injected parameters cell
    assert executed.cells[1].source == "import yaml"
    shown = subprocess.run(
        ["scontrol", "show", "job", "-o", handle], capture_output=True, text=True, timeout=30
    ).stdout
    assert "mem=512M" in shown and "NumCPUs=1" in shown
    assert backend._jobcomp(handle) is not None  # the jobcomp file agrees (after MinJobAge)
    assert _containers("docker", tag) == []  # --rm


@pytest.mark.reliability("I2")
def test_scancel_stops_the_container_within_seconds(job: JobSpec, tmp_path: Path) -> None:
    backend = SlurmBackend(runtime="docker", output_dir=str(tmp_path))
    handle = backend.submit(_with(job, sleep=300))
    end = time.monotonic() + 120
    while not _containers("docker", job.job_id) and time.monotonic() < end:
        time.sleep(0.5)
    assert _containers("docker", job.job_id), backend.logs(handle)
    assert backend.status(handle).state is JobState.RUNNING
    backend.cancel(handle)
    started = time.monotonic()
    # without `exec docker run --init` the container outlives scancel (minutes, until its sleep
    # ends): the bound is generous for a loaded machine, not a timing claim
    while _containers("docker", job.job_id) and time.monotonic() - started < 60:
        time.sleep(0.5)
    assert not _containers("docker", job.job_id), time.monotonic() - started
    assert wait_for(backend, handle, timeout=60, poll=1).state is JobState.CANCELLED


def test_a_failing_notebook_is_a_failed_job_with_its_reason(job: JobSpec, tmp_path: Path) -> None:
    backend = SlurmBackend(output_dir=str(tmp_path))
    handle = backend.submit(_with(job, exit_code=3))
    status = wait_for(backend, handle, timeout=300, poll=1)
    assert (status.state, status.reason, status.exit_code) == (JobState.FAILED, "cell-error", 3)
    comp = backend._jobcomp(handle)
    assert comp is not None and comp["JobState"] == "FAILED" and comp["ExitCode"] == "3:0"


def test_podman_runtime_runs_the_job(job: JobSpec, tmp_path: Path) -> None:
    if not shutil.which("podman"):
        _missing("podman is not installed", ".ci/podman-up")
    backend = SlurmBackend(runtime="podman", output_dir=str(tmp_path))
    handle = backend.submit(_with(job, payload=1000))
    status = wait_for(backend, handle, timeout=300, poll=1)
    assert status.state is JobState.SUCCEEDED, backend.logs(handle)
    executed = nbformat.reads(fetch_result(backend, handle), as_version=4)
    assert executed.metadata["envpack"]["fake_runner"] is True
    assert _containers("podman", job.job_id) == []


@pytest.mark.reliability("J1")
def test_a_restarted_server_reconciles_by_job_id(
    fake_image: str, slurm: None, tmp_path: Path
) -> None:
    config = EnvPack(backend_options={"slurm": {"output_dir": str(tmp_path / "out")}})
    opts = SubmitOptions(backend="slurm", runtime="docker", parameters={"sleep": 2}, deadline=120)
    index = JobIndex(tmp_path / "jobs.sqlite")
    done = submit("fake.ipynb", opts, image=fake_image, index=index, config=config)
    record = done.record
    assert record.handle and record.options["backend"] == {"runtime": "docker"}
    # a new process: a new index object and backend, from the stored record and the config only
    again = JobIndex(tmp_path / "jobs.sqlite")
    end = time.monotonic() + 300
    while not record.finished and time.monotonic() < end:
        record = refresh(again.get(record.id), again, backend_of(record, config))
        time.sleep(1)
    assert record.state == "succeeded", record.message
    assert backend_of(record, config).result_log(record.handle or "").count("ENVPACK RESULT") == 2


def _with(job: JobSpec, **params: Any) -> JobSpec:
    from dataclasses import replace

    return replace(job, parameters_cell=_params(**params))


def test_a_sweep_is_one_job_array_and_a_failed_member_stops_no_other(
    job: JobSpec, tmp_path: Path
) -> None:
    from jupyter_envpack.cluster.slurm_sweep import follow_slurm_sweep
    from jupyter_envpack.execute.parameters import parameters_cell_source
    from jupyter_envpack.execute.sweep import sweep_rows, write_summary

    backend = SlurmBackend(runtime="docker", output_dir=str(tmp_path / "out"))
    rows = sweep_rows(["exit_code=0,3", "sleep=0..2"])
    cells = [parameters_cell_source(row) for row in rows]
    handle = backend.submit_sweep(job, cells, max_parallel=2)
    seen = subprocess.run(
        ["scontrol", "show", "job", "-o", handle], capture_output=True, text=True, timeout=30
    ).stdout
    assert "ArrayTaskThrottle=2" in seen  # the concurrency cap reached Slurm
    runs = follow_slurm_sweep(
        backend, handle, rows, folder=tmp_path / "nbs", stem="fake", timeout=600, poll=1
    )
    assert [r.state for r in runs] == ["succeeded"] * 3 + ["failed"] * 3
    from jupyter_envpack.cluster.sweeps import member_states, summarize

    states = member_states("slurm", backend, handle, len(rows))  # what `jobs --members` shows
    assert [states[i].state.value for i in range(len(rows))] == [r.state for r in runs]
    assert summarize(states, len(rows)).message == "3 succeeded, 3 failed"
    from types import SimpleNamespace

    from jupyter_envpack.cluster.base import RESULT_BEGIN
    from jupyter_envpack.cluster.sweeps import member_log

    record = SimpleNamespace(
        id="s", backend="slurm", handle=handle, options={"sweep": {"members": 6}}
    )
    log = member_log(record, backend, 4)  # `logs ID --member 4`: that run's own log
    assert RESULT_BEGIN in log
    for run in runs:  # failed members print their notebook too; each ran its own row
        source = nbformat.read(run.output or "", as_version=4).cells[0].source
        assert f"exit_code = {run.parameters['exit_code']}" in source
        assert f"sleep = {run.parameters['sleep']}" in source
    assert runs[4].output.endswith("fake.sweep-04-exit_code=3-sleep=1.ipynb")  # type: ignore[union-attr]
    text = write_summary(tmp_path / "summary.csv", runs).read_text()
    assert text.count("\n") == 7 and text.count("a cell raised an exception") == 3
