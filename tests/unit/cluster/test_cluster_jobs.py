"""The job index, the CLI verbs across invocations and the server's ``job`` kind, driven through
a small in-memory backend plugged in the way a third-party one would be (``c.EnvPack
.cluster_backends``). No cluster and no Docker here."""

from __future__ import annotations

import base64
import gzip
import json
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any, ClassVar

import kubernetes_validate
import pytest
import yaml

from jupyter_envpack.cli import main
from jupyter_envpack.cluster import jobs
from jupyter_envpack.cluster.base import JobSpec, JobState, JobStatus, status_from_exit_code
from jupyter_envpack.cluster.jobs import JobIndex, JobRecord, SubmitOptions
from jupyter_envpack.cluster.registry import PushResult, RegistryAuth
from jupyter_envpack.errors import ClusterError, ConflictError, InputError, NotFoundError, RunError
from jupyter_envpack.events import CancelToken

IMAGE = "envpack/nb:0123456789abcdef0123"


def result_log(notebook: dict[str, Any]) -> str:
    blob = base64.b64encode(gzip.compress(json.dumps(notebook).encode())).decode()
    return (
        "progress\n----- ENVPACK RESULT BEGIN -----\n" + blob + "\n----- ENVPACK RESULT END -----\n"
    )


class FakeBackend:
    """An in-memory backend; ``FakeBackend.plan[job_id]`` says how each job ends."""

    name = "fake"
    jobs: ClassVar[dict[str, dict[str, Any]]] = {}
    plan: ClassVar[dict[str, Any]] = {}
    cancelled: ClassVar[list[str]] = []

    def __init__(self, **options: Any) -> None:
        self.options = options

    def render(self, spec: JobSpec) -> list[dict[str, Any]]:
        return [{"kind": "FakeJob", "name": spec.name, "image": spec.image}]

    def submit(self, spec: JobSpec, reporter: Any = None) -> str:
        if self.plan.get("refuse"):
            raise ClusterError("the fake cluster refuses")
        handle = f"fake/{spec.job_id}"
        self.jobs.setdefault(handle, {"spec": spec, "polls": 0})
        return handle

    def status(self, handle: str) -> JobStatus:
        job = self.jobs.get(handle)
        if job is None:
            return JobStatus(JobState.LOST, "gone", "no such job")
        job["polls"] += 1
        if job["polls"] < 2:
            return JobStatus(JobState.RUNNING, "running", "running on fake-node")
        return status_from_exit_code(self.plan.get("exit_code", 0), "fake-node")

    def logs(self, handle: str, tail: int | None = None) -> str:
        if "log" in self.plan:
            return str(self.plan["log"])
        spec = self.jobs[handle]["spec"]
        cell = {
            "cell_type": "code",
            "id": "c",
            "metadata": {},
            "execution_count": 1,
            "source": spec.parameters_cell or "",
            "outputs": [],
        }
        return result_log({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [cell]})

    def cancel(self, handle: str) -> None:
        self.cancelled.append(handle)
        self.jobs.pop(handle, None)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private job index and a Jupyter config that plugs the fake backend in."""
    FakeBackend.jobs.clear()
    FakeBackend.plan.clear()
    FakeBackend.cancelled.clear()
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "jupyter_envpack_config.json").write_text(
        json.dumps(
            {
                "EnvPack": {
                    "cluster_backends": {"fake": f"{__name__}:FakeBackend"},
                    "default_backend": "fake",
                }
            }
        )
    )
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(config_dir))
    monkeypatch.setenv("ENVPACK_JOBS_DB", str(tmp_path / "jobs.sqlite"))
    monkeypatch.setattr(jobs.time, "sleep", lambda s: None)
    monkeypatch.setattr(CancelToken, "wait", lambda self, seconds: self.cancelled)  # no 2 s polls
    return tmp_path


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main([argv[0], "-q", *argv[1:]])
    out, err = capsys.readouterr()
    return code, out, err


def notebook(tmp_path: Path) -> Path:
    path = tmp_path / "analysis.ipynb"
    path.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}))
    return path


def test_cli_submit_then_jobs_logs_fetch_cancel_across_invocations(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nb = notebook(isolated)
    code, out, _ = cli(capsys, "submit", str(nb), "--image", IMAGE, "-p", "n", "3")
    assert code == 0
    job_id = out.strip()
    assert len(job_id) == 12

    code, out, _ = cli(capsys, "jobs", "--json")
    (listed,) = json.loads(out)
    assert (listed["id"], listed["backend"], listed["state"]) == (job_id, "fake", "running")
    code, out, _ = cli(capsys, "jobs", "--json")
    assert json.loads(out)[0]["state"] == "succeeded"

    code, out, _ = cli(capsys, "logs", job_id[:6])
    assert code == 0 and out.splitlines() == [
        "progress",
        "[the executed notebook: 1 lines of gzip+base64 — `jupyter envpack fetch ID` writes it]",
    ]
    code, out, _ = cli(capsys, "logs", job_id, "--raw")
    assert code == 0 and "ENVPACK RESULT BEGIN" in out
    target = isolated / "out" / "executed.ipynb"
    code, out, _ = cli(capsys, "fetch", job_id, "--output", str(target))
    assert code == 0 and out.strip() == str(target)
    executed = json.loads(target.read_text())
    assert "n = 3" in executed["cells"][0]["source"]

    code, _, err = cli(capsys, "cancel", job_id)
    assert code == 2 and "already succeeded" in err  # a finished job cannot be cancelled


@pytest.mark.reliability("L1")
def test_fetch_never_writes_through_planted_links(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    canary = isolated / "bashrc"
    canary.write_text("the user's own file")
    part = isolated / "analysis.envpack.ipynb.part"
    part.symlink_to(canary)
    code, out, _ = cli(capsys, "submit", str(notebook(isolated)), "--image", IMAGE, "--wait")
    assert code == 0
    assert canary.read_text() == "the user's own file" and part.is_symlink()
    assert json.loads((isolated / "analysis.envpack.ipynb").read_text())["nbformat"] == 4
    final = isolated / "other.ipynb"
    final.symlink_to(canary)
    code, _, err = cli(capsys, "fetch", out.strip(), "--output", str(final))
    assert code != 0 and "symbolic link" in err
    assert canary.read_text() == "the user's own file" and final.is_symlink()


@pytest.mark.reliability("L1")
def test_a_result_that_is_not_a_notebook_is_never_written(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "submit", str(notebook(isolated)), "--image", IMAGE)
    blob = base64.b64encode(gzip.compress(b"export EVIL=1\n")).decode()
    FakeBackend.plan["log"] = (
        f"----- ENVPACK RESULT BEGIN -----\n{blob}\n----- ENVPACK RESULT END -----\n"
    )
    target = isolated / "executed.ipynb"
    code, _, err = cli(capsys, "fetch", out.strip(), "--output", str(target))
    assert code != 0 and "not a readable notebook" in err
    assert not target.exists()


def test_cli_cancel_stops_a_running_job(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "submit", str(notebook(isolated)), "--image", IMAGE)
    job_id = out.strip()
    code, out, _ = cli(capsys, "cancel", job_id)
    assert code == 0 and out.strip() == f"{job_id} cancelled"
    assert FakeBackend.cancelled == [f"fake/{job_id}"]
    assert cli(capsys, "jobs", "--json")[1].count('"cancelled"') == 2  # state and reason


@pytest.mark.parametrize(("exit_code", "cli_code"), [(0, 0), (3, 1)])
def test_cli_submit_wait_fetches_the_notebook(
    isolated: Path, capsys: pytest.CaptureFixture[str], exit_code: int, cli_code: int
) -> None:
    FakeBackend.plan["exit_code"] = exit_code
    nb = notebook(isolated)
    code, _, err = cli(capsys, "submit", str(nb), "--image", IMAGE, "--wait")
    assert code == cli_code
    assert (isolated / "analysis.envpack.ipynb").is_file()
    assert ("succeeded" if exit_code == 0 else "a cell raised") in err
    assert ("jupyter envpack logs" in err) is (exit_code != 0)


def test_a_failed_job_puts_its_log_tail_into_the_events(isolated: Path) -> None:
    from jupyter_envpack.config import load_envpack_config

    FakeBackend.plan["exit_code"] = 5
    events: list[Any] = []
    done = jobs.submit(
        str(notebook(isolated)),
        SubmitOptions(backend="fake"),
        image=IMAGE,
        wait=True,
        reporter=events.append,
        config=load_envpack_config(),
    )
    assert done.status is not None and done.status.reason == "kernel-died"
    logged = [e.message for e in events if e.kind == "log"]
    assert logged[0] == "progress" and "executed notebook" in logged[-1]


def test_cli_dry_run_prints_valid_kubernetes_yaml_and_contacts_nothing(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(
        capsys,
        "submit",
        str(notebook(isolated)),
        "--image",
        IMAGE,
        "--backend",
        "kubernetes",
        "--registry",
        "registry.example:5000",
        "--schedule",
        "0 6 * * *",
        "--timezone",
        "Europe/Paris",
        "--namespace",
        "science",
        "--kubeconfig",
        str(isolated / "none"),
        "--image-pull-secret",
        "regcred",
        "--dry-run",
    )
    assert code == 0
    (cron,) = list(yaml.safe_load_all(out))
    kubernetes_validate.validate(cron, "1.30.0", strict=True)
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"registry.example:5000/{IMAGE}"
    assert not (isolated / "jobs.sqlite").exists() or not JobIndex().list()


def test_cli_dry_run_prints_the_swarm_service(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(
        capsys,
        "submit",
        str(notebook(isolated)),
        "--image",
        IMAGE,
        "--backend",
        "swarm",
        "--constraint",
        "node.role==worker",
        "--memory",
        "1g",
        "--memory-request",
        "256m",
        "--cpu",
        "2",
        "--cpu-request",
        "0.5",
        "--dry-run",
    )
    service = yaml.safe_load(out)
    assert code == 0 and service["Mode"] == {
        "ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}
    }
    resources = service["TaskTemplate"]["Resources"]
    assert resources["Limits"] == {"MemoryBytes": 2**30, "NanoCPUs": 2 * 10**9, "Pids": 1024}
    assert resources["Reservations"] == {"MemoryBytes": 256 * 2**20, "NanoCPUs": 5 * 10**8}


@pytest.mark.reliability("I7")
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--backend", "swarm", "--schedule", "0 6 * * *"], "kubernetes backend"),
        (["--backend", "kubernetes", "--schedule", "*/30 * * * * *"], "minute resolution"),
        (
            ["--backend", "kubernetes", "--schedule", "@daily", "--timezone", "Nowhere/Else"],
            "time zone",
        ),
        (["--registry", "Not A Registry"], "invalid registry"),
        (["--registry-user", "u"], "needs a password"),
        (["--memory", "1g", "--memory-request", "2g"], "larger than --memory"),
        (["--cpu", "-1"], "must be positive"),
    ],
)
def test_cli_bad_options_are_clear_errors(
    isolated: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    code, _, err = cli(capsys, "submit", str(notebook(isolated)), "--image", IMAGE, *extra)
    assert code == 2 and message in err


def test_a_refused_submit_is_recorded_as_failed(isolated: Path) -> None:
    FakeBackend.plan["refuse"] = True
    from jupyter_envpack.config import load_envpack_config

    with pytest.raises(ClusterError):
        jobs.submit(
            str(notebook(isolated)),
            SubmitOptions(backend="fake"),
            image=IMAGE,
            config=load_envpack_config(),
        )
    (record,) = JobIndex().list()
    assert (record.state, record.reason) == ("failed", "submit-failed")


@pytest.mark.reliability("E1")
def test_registry_password_never_reaches_the_index(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canary = uuid.uuid4().hex
    seen: list[Any] = []

    def fake_push(image: str, registry: str, **kwargs: Any) -> PushResult:
        seen.append(kwargs["auth"])
        return PushResult(f"{registry}/{image}", "sha256:1", ("a",), ())

    monkeypatch.setattr(jobs, "push_image", fake_push)
    from jupyter_envpack.config import load_envpack_config

    opts = SubmitOptions(
        backend="fake", registry="127.0.0.1:5000", registry_auth=RegistryAuth("u", canary)
    )
    done = jobs.submit(str(notebook(isolated)), opts, image=IMAGE, config=load_envpack_config())
    assert seen[0].password == canary and canary not in repr(opts)
    dump = "\n".join(sqlite3.connect(isolated / "jobs.sqlite").iterdump())
    assert canary not in dump and done.record.image == f"127.0.0.1:5000/{IMAGE}"


def test_index_ids_prefixes_and_final_states(isolated: Path) -> None:
    index = JobIndex()
    index.add(JobRecord(id="abc111", backend="fake", notebook="a.ipynb", image=IMAGE))
    index.add(JobRecord(id="abc222", backend="fake", notebook="b.ipynb", image=IMAGE))
    assert index.get("abc2").notebook == "b.ipynb"
    with pytest.raises(InputError, match="ambiguous"):
        index.get("abc")
    with pytest.raises(NotFoundError):
        index.get("fff")
    with pytest.raises(InputError):
        index.get("'; drop table jobs; --")
    assert index.record_status("abc111", JobStatus(JobState.FAILED, "cell-error", "boom"))
    assert not index.record_status("abc111", JobStatus(JobState.SUCCEEDED, "completed", "ok"))
    assert index.get("abc111").state == "failed"
    with pytest.raises(ConflictError):
        jobs.cancel(index.get("abc111"), index)


@pytest.mark.reliability("I6")
def test_racing_final_states_make_exactly_one_transition(isolated: Path) -> None:
    index = JobIndex()
    index.add(
        JobRecord(id="feed01", backend="fake", notebook="a.ipynb", image=IMAGE, state="running")
    )
    wins: list[bool] = []
    statuses = [
        JobStatus(JobState.SUCCEEDED, "completed", ""),
        JobStatus(JobState.CANCELLED, "cancelled", ""),
    ] * 10

    def record(status: JobStatus) -> None:
        wins.append(index.record_status("feed01", status))

    threads = [threading.Thread(target=record, args=(s,)) for s in statuses]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1


class FakeOp:
    """The parts of the server's OperationContext that the job kind uses."""

    def __init__(self, root: Path, options: dict[str, Any]) -> None:
        from jupyter_envpack.config import load_envpack_config

        self.id = uuid.uuid4().hex
        self.root = root
        self.options = options
        self.handle: dict[str, Any] = {}
        self.config = load_envpack_config()
        self.labels = {"org.jupyter.envpack.operation": self.id}
        self.notebook = notebook(root)
        self.handles_seen: list[dict[str, Any]] = []

    def set_handle(self, **values: Any) -> None:
        self.handle.update(values)
        self.handles_seen.append(dict(self.handle))

    def resolve_output(self, api_path: str) -> Path:
        return self.root / api_path

    def relative(self, path: str | Path) -> str:
        return str(Path(path).relative_to(self.root))


def test_job_kind_runs_follows_and_resumes(isolated: Path) -> None:
    from jupyter_envpack.cluster.operation import job_kind, resume_job

    op = FakeOp(
        isolated,
        job_kind.validate({"image": IMAGE, "parameters": {"n": 5}, "output": "out/run.ipynb"}),
    )
    result = job_kind.run(op, lambda e: None, jobs.CancelToken())
    assert result["state"] == "succeeded" and result["output_path"] == "out/run.ipynb"
    assert result["job_id"] == op.id[:12]
    assert op.handles_seen[0]["handle"] is None  # persisted before the cluster was contacted
    assert op.handle["handle"] == f"fake/{op.id[:12]}"
    spec = FakeBackend.jobs[op.handle["handle"]]["spec"]
    assert spec.labels["org.jupyter.envpack.operation"] == op.id
    again = resume_job(op, lambda e: None, jobs.CancelToken())
    assert again["state"] == "succeeded"


def test_job_kind_failures(isolated: Path) -> None:
    from jupyter_envpack.cluster.operation import job_kind, resume_job
    from jupyter_envpack.operations import LostError

    FakeBackend.plan["exit_code"] = 3
    op = FakeOp(isolated, {"image": IMAGE})
    with pytest.raises(RunError, match="a cell raised"):
        job_kind.run(op, lambda e: None, jobs.CancelToken())
    FakeBackend.jobs.clear()  # the cluster forgot the job while the server was down
    lost = FakeOp(isolated, {})
    lost.handle = {**op.handle}
    lost.handle["job_id"] = "0" * 12
    lost.handle["handle"] = "fake/gone"
    with pytest.raises(LostError):
        resume_job(lost, lambda e: None, jobs.CancelToken())
    for bad in (
        {"nope": 1},
        {"memory": True},
        {"memory": [1]},
        {"cpu": "2"},
        {"wait": "yes"},
        {"constraints": "node.role==worker"},
        {"image": "Bad Image"},
        {"parameters": {"x y": 1}},
        {"schedule": "* * *"},
    ):
        with pytest.raises(InputError):
            job_kind.validate(bad)


@pytest.mark.reliability("I1")
def test_backend_availability_says_why(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_envpack.config import load_envpack_config

    monkeypatch.setenv("KUBECONFIG", str(isolated / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    inactive = type("Client", (), {"info": lambda self: {"Swarm": {"LocalNodeState": "inactive"}}})
    found = jobs.backend_availability(load_envpack_config(), client=inactive())
    assert found["fake"] == {"available": True}
    assert (
        found["swarm"]["available"] is False and "not part of a swarm" in found["swarm"]["reason"]
    )
    assert found["kubernetes"]["available"] is False
    assert "KUBECONFIG" in found["kubernetes"]["hint"]


@pytest.mark.reliability("I1")
def test_an_unusable_backend_is_reported_before_any_build(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(isolated / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    def no_build(*args: Any, **kwargs: Any) -> str:
        raise AssertionError("built before checking the backend")

    monkeypatch.setattr(jobs, "image_for", no_build)
    with pytest.raises(ClusterError, match="no Kubernetes configuration"):
        jobs.submit(str(notebook(isolated)), SubmitOptions(backend="kubernetes"))
    assert JobIndex().list() == []


def test_a_backend_class_can_be_configured_directly() -> None:
    """``c.EnvPack.cluster_backends`` takes classes (a traitlets ``Type``) as well as strings."""
    from jupyter_envpack.config import EnvPack

    config = EnvPack(cluster_backends={"mine": FakeBackend})
    backend = jobs.open_backend("mine", {"zone": "a"}, config)
    assert isinstance(backend, FakeBackend) and backend.options == {"zone": "a"}
    no_swarm = type("Client", (), {"info": lambda self: {"Swarm": {}}})()
    assert jobs.backend_availability(config, client=no_swarm)["mine"] == {"available": True}


def test_one_state_vocabulary_for_jobs_and_operations() -> None:
    from jupyter_envpack.operations.model import STATES, TERMINAL, State

    assert JobState is State and JobState.PENDING is JobState.QUEUED
    assert [s.value for s in JobState] == list(STATES)
    assert {s.value for s in JobState if s.terminal} == TERMINAL
    assert JobRecord("a", "swarm", "nb.ipynb", "img").state in STATES


def test_an_old_job_index_reads_in_the_one_vocabulary(tmp_path: Path) -> None:
    """Rows written as ``submitting``/``pending`` by earlier versions stay open, as ``queued``."""
    path = tmp_path / "cluster-jobs.sqlite"
    JobIndex(path)
    with sqlite3.connect(path) as db:
        for job_id, state in (("a1", "submitting"), ("b2", "pending"), ("c3", "succeeded")):
            db.execute(
                "INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (job_id, "swarm", None, "{}", "nb.ipynb", "img", None, state, "", "", 1.0, 1.0),
            )
    index = JobIndex(path)
    states = {r.id: (r.state, r.finished) for r in index.list()}
    assert states == {
        "a1": ("queued", False),
        "b2": ("queued", False),
        "c3": ("succeeded", True),
    }
    assert index.record_status("b2", JobStatus(JobState.RUNNING)) is True
    assert index.get("b2").state == "running"
