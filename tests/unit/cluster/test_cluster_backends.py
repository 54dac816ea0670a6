"""Pure parts of the cluster backends: lookup, sizes, exit codes, Swarm spec and task states,
registry reference grammar, push-stream parsing and sanitising (no Docker here)."""

from __future__ import annotations

import base64
from typing import Any, ClassVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jupyter_envpack.cluster import base
from jupyter_envpack.cluster.base import JobSpec, JobState, backend_names, get_backend
from jupyter_envpack.cluster.jobs import memory_size
from jupyter_envpack.cluster.kubernetes import KubernetesBackend
from jupyter_envpack.cluster.registry import (
    RegistryAuth,
    push_image,
    sanitize,
    split_image,
    target_reference,
    validate_registry,
)
from jupyter_envpack.cluster.swarm import SwarmBackend, make_service_spec
from jupyter_envpack.errors import ClusterError, InputError, RegistryError

SPEC = JobSpec(
    job_id="abc123",
    name="nb-0123456789",
    image="127.0.0.1:5000/envpack/nb:1",
    parameters_cell="n = 1\n",
    cell_timeout=30,
    deadline=120,
    cpu=1.5,
    memory=512 * 2**20,
    constraints=("node.role==worker",),
    labels={"team": "x"},
)


def test_backends_are_found_by_name() -> None:
    assert {"swarm", "kubernetes", "slurm"} <= set(backend_names())
    assert isinstance(get_backend("swarm", client=object()), SwarmBackend)
    assert isinstance(get_backend("kubernetes", api_client=object()), KubernetesBackend)
    with pytest.raises(InputError, match="unknown cluster backend"):
        get_backend("lsf")


def test_backends_are_registered_by_entry_points_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A package's entry point is found like envpack's own; the config adds names on top."""
    from importlib.metadata import EntryPoint

    from jupyter_envpack import config
    from jupyter_envpack.config import EnvPack

    seen: list[str] = []

    def points(group: str) -> list[EntryPoint]:
        seen.append(group)
        return [EntryPoint("lsf", "collections:OrderedDict", group)]

    monkeypatch.setattr("importlib.metadata.entry_points", points)
    assert base.backend_names() == ["lsf"] and seen == [config.BACKEND_GROUP]
    assert base.backend_class("lsf").__name__ == "OrderedDict"
    with pytest.raises(InputError, match="unknown cluster backend 'swarm'"):
        base.backend_class("swarm")  # not installed in this monkeypatched world: no fallback
    mine = EnvPack(cluster_backends={"swarm": dict})
    assert mine.backend_class("swarm") is dict and set(mine.backend_registry()) == {"lsf", "swarm"}


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512m", 512 * 2**20),
        ("2g", 2 * 2**30),
        ("1Gi", 2**30),
        ("1.5g", int(1.5 * 2**30)),
        ("1048576", 2**20),
        (4096, 4096),
        (None, None),
        ("", None),
    ],
)
def test_memory_sizes(text: Any, size: int | None) -> None:
    assert memory_size(text) == size


@pytest.mark.parametrize("text", ["lots", "-1g", "1 GB of RAM", "0", 0, "1e9"])
def test_bad_memory_sizes(text: Any) -> None:
    with pytest.raises(InputError):
        memory_size(text)


@pytest.mark.parametrize(
    ("code", "state", "reason"),
    [
        (0, JobState.SUCCEEDED, "completed"),
        (2, JobState.FAILED, "bad-input"),
        (3, JobState.FAILED, "cell-error"),
        (4, JobState.FAILED, "cell-timeout"),
        (5, JobState.FAILED, "kernel-died"),
        (137, JobState.FAILED, "killed-or-oom"),
        (42, JobState.FAILED, "exit-code"),
    ],
)
def test_exit_codes(code: int, state: JobState, reason: str) -> None:
    status = base.status_from_exit_code(code)
    assert (status.state, status.reason, status.exit_code) == (state, reason, code)
    assert status.terminal


def test_the_job_environment_is_an_allowlist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_TOKEN", "secret-token")
    assert SPEC.environment() == {"HOME": "/home/envpack", "ENVPACK_PARAMETERS_CELL": "n = 1\n"}
    assert SPEC.command() == [
        "/opt/envpack/runner/bin/python",
        "/opt/envpack/run_notebook.py",
        "--emit-result",
        "--cell-timeout",
        "30",
    ]


def test_swarm_service_spec() -> None:
    body = make_service_spec(SPEC)
    labels = {
        "team": "x",
        "org.jupyter.envpack": "1",
        "org.jupyter.envpack.kind": "job",
        "org.jupyter.envpack.job": "abc123",
        "org.jupyter.envpack.deadline": "120",
    }
    assert body["Name"] == "nb-0123456789" and body["Labels"] == labels
    assert body["Mode"] == {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}}
    task = body["TaskTemplate"]
    assert task["RestartPolicy"]["Condition"] == "none"
    assert task["Resources"] == {
        "Limits": {"NanoCPUs": 1_500_000_000, "MemoryBytes": 512 * 2**20, "Pids": 1024}
    }
    assert task["Placement"] == {"Constraints": ["node.role==worker"]}
    assert task["LogDriver"] == {
        "Name": "json-file",
        "Options": {"max-size": "256m", "max-file": "2"},
    }
    container = task["ContainerSpec"]
    assert container["User"] == "1000:1000" and container["CapabilityDrop"] == ["ALL"]
    assert sorted(container["Env"]) == ["ENVPACK_PARAMETERS_CELL=n = 1\n", "HOME=/home/envpack"]
    assert container["ReadOnly"] is True
    assert container["Privileges"] == {"NoNewPrivileges": True}
    assert [(m["Type"], m["Target"]) for m in container["Mounts"]] == [
        ("volume", "/home/envpack"),
        ("tmpfs", "/tmp"),
    ]


@pytest.mark.reliability("L4")
def test_swarm_jobs_are_bounded_by_default() -> None:
    from dataclasses import replace

    body = make_service_spec(replace(SPEC, cpu=None, memory=None))
    assert body["TaskTemplate"]["Resources"]["Limits"] == {
        "NanoCPUs": 2 * 10**9,
        "MemoryBytes": 2 * 2**30,
        "Pids": 1024,
    }


class FakeSwarmClient:
    """Just enough of docker-py for SwarmBackend's status and checks."""

    def __init__(
        self,
        swarm: dict[str, Any],
        tasks: list[dict[str, Any]] | None = None,
        node: dict[str, Any] | None = None,
    ) -> None:
        self._swarm, self._tasks = swarm, tasks or []
        self._node = node or {
            "Description": {"Hostname": "w1"},
            "Status": {"State": "ready"},
            "Spec": {"Availability": "active"},
        }
        outer = self

        class Service:
            id, name = "svc", "nb"
            attrs: ClassVar[dict[str, Any]] = {
                "CreatedAt": "2099-01-01T00:00:00.000000000Z",
                "Spec": {"Labels": {"org.jupyter.envpack.deadline": "60"}},
            }

            def tasks(self) -> list[dict[str, Any]]:
                return outer._tasks

        class Node:
            attrs = outer._node

        self.services = type(
            "S", (), {"get": lambda s, h: Service(), "list": lambda s, filters: []}
        )()
        self.nodes = type("N", (), {"get": lambda s, i: Node()})()

    def info(self) -> dict[str, Any]:
        return {"Swarm": self._swarm}


MANAGER = {"LocalNodeState": "active", "ControlAvailable": True}


@pytest.mark.reliability("I1")
@pytest.mark.parametrize(
    ("swarm", "match"),
    [
        ({"LocalNodeState": "inactive"}, "not part of a swarm"),
        ({"LocalNodeState": "active", "ControlAvailable": False}, "worker, not a manager"),
    ],
)
def test_swarm_unavailable_is_refused_at_submit(swarm: dict[str, Any], match: str) -> None:
    with pytest.raises(ClusterError, match=match) as info:
        SwarmBackend(client=FakeSwarmClient(swarm)).submit(SPEC)
    assert info.value.hint


def task(
    state: str, *, exit_code: int | None = None, err: str = "", node: str = "n1"
) -> dict[str, Any]:
    status: dict[str, Any] = {"State": state, "Message": state, "Err": err}
    if exit_code is not None:
        status["ContainerStatus"] = {"ExitCode": exit_code}
    return {"CreatedAt": "2099-01-01T00:00:01Z", "NodeID": node, "Status": status}


@pytest.mark.parametrize(
    ("the_task", "node_state", "availability", "expected"),
    [
        (task("complete", exit_code=0), "ready", "active", (JobState.SUCCEEDED, "completed")),
        (task("failed", exit_code=3), "ready", "active", (JobState.FAILED, "cell-error")),
        (
            task("rejected", err="No such image: r/x:1"),
            "ready",
            "active",
            (JobState.FAILED, "image-pull-failed"),
        ),
        (task("running"), "ready", "active", (JobState.RUNNING, "running")),
        (task("running"), "down", "active", (JobState.LOST, "node-lost")),
        (task("shutdown"), "ready", "drain", (JobState.LOST, "node-drained")),
        (task("orphaned"), "down", "active", (JobState.LOST, "node-lost")),
        (task("pending", err="no suitable node"), "ready", "active", (JobState.PENDING, "pending")),
    ],
)
def test_swarm_task_states(
    the_task: dict[str, Any], node_state: str, availability: str, expected: tuple[JobState, str]
) -> None:
    node = {
        "Description": {"Hostname": "w1"},
        "Status": {"State": node_state},
        "Spec": {"Availability": availability},
    }
    status = SwarmBackend(client=FakeSwarmClient(MANAGER, [the_task], node)).status("svc")
    assert (status.state, status.reason) == expected


@pytest.mark.reliability("G4")
@pytest.mark.parametrize(
    "registry",
    [
        "127.0.0.1:5000\n",
        "Registry.Example/Org",
        "http://r.example",
        "a b",
        "r.example/../x",
        "r.example:5000/Org",
        "",
        "r.example/ns;id",
        "-r.example",
    ],
)
def test_bad_registries_are_refused_before_any_daemon_call(registry: str) -> None:
    with pytest.raises(InputError):
        validate_registry(registry)


@pytest.mark.parametrize(
    ("image", "registry", "expected"),
    [
        ("envpack/nb:0123", "127.0.0.1:5000", ("127.0.0.1:5000/envpack/nb", "0123")),
        ("envpack/nb:0123", "ghcr.io/org/", ("ghcr.io/org/envpack/nb", "0123")),
        ("envpack/nb:0123", "[::1]:5000", ("[::1]:5000/envpack/nb", "0123")),
    ],
)
def test_target_references(image: str, registry: str, expected: tuple[str, str]) -> None:
    assert target_reference(image, registry) == expected


@pytest.mark.reliability("G4")
@pytest.mark.parametrize(
    "image",
    [
        "envpack/NB:1",
        "envpack/nb",
        "envpack/nb:" + "x" * 129,
        "envpack/nb:a b",
        "envpack/nb:1\n",
        "envpack/../nb:1",
    ],
)
def test_bad_images_are_refused(image: str) -> None:
    with pytest.raises(InputError):
        split_image(image)


@pytest.mark.reliability("E4")
@given(
    password=st.text(
        alphabet=st.characters(codec="ascii", categories=["L", "N", "P"]), min_size=8, max_size=40
    )
)
def test_sanitize_removes_every_form_of_the_password(password: str) -> None:
    auth = RegistryAuth("user", password)
    encoded = base64.b64encode(f"user:{password}".encode()).decode()
    text = (
        f"denied for {password}; header {encoded}; url https://user:{password}@r.example/v2/;"
        f' {{"password": "{password}"}}'
    )
    clean = sanitize(text, auth.secrets())
    assert password not in clean and encoded not in clean
    assert "RegistryAuth" in repr(auth) and password not in repr(auth)


class FakePushAPI:
    """A docker-py APIClient whose push yields scripted stream lines."""

    def __init__(self, lines: list[dict[str, Any]]) -> None:
        self.lines, self.calls = lines, []

    def tag(self, image: str, repository: str, tag: str) -> bool:
        self.calls.append(("tag", image, repository, tag))
        return True

    def push(self, repository: str, **kwargs: Any) -> Any:
        self.calls.append(("push", repository, kwargs))
        return iter(self.lines)


def fake_client(lines: list[dict[str, Any]]) -> Any:
    return type("Client", (), {"api": FakePushAPI(lines)})()


@pytest.mark.reliability("G1")
def test_in_band_push_errors_raise_sanitised() -> None:
    secret = "s3cr3t-canary-pw"
    client = fake_client(
        [
            {"status": "The push refers to repository [r.example/envpack/nb]"},
            {"status": "Preparing", "id": "aaa"},
            {
                "errorDetail": {"message": f"unauthorized: bad login user:{secret}"},
                "error": f"unauthorized: bad login user:{secret}",
            },
        ]
    )
    with pytest.raises(RegistryError) as info:
        push_image("envpack/nb:1", "r.example", auth=RegistryAuth("user", secret), client=client)
    assert secret not in str(info.value) and "unauthorized" in info.value.message
    assert client.api.calls[1][2]["auth_config"] == {"username": "user", "password": secret}


def test_push_counts_layers() -> None:
    client = fake_client(
        [
            {"status": "Pushed", "id": "a"},
            {"status": "Layer already exists", "id": "b"},
            {"status": "Mounted from envpack/base", "id": "c"},
            {
                "status": "1: digest: sha256:feed size: 1",
                "aux": {"Tag": "1", "Digest": "sha256:feed"},
            },
        ]
    )
    result = push_image("envpack/nb:1", "127.0.0.1:5000", client=client)
    assert result.pushed == ("a",) and set(result.existing) == {"b", "c"}
    assert result.digest == "sha256:feed" and not result.uploaded_nothing
    assert "auth_config" not in client.api.calls[1][2]  # docker config credentials are used


class ScriptedBackend:
    """Statuses and logs in a fixed order (a real little class, not a mock)."""

    name = "scripted"

    def __init__(self, states: list[JobState], logs: list[str]) -> None:
        self.states, self.log_texts = states, logs

    def status(self, handle: str) -> base.JobStatus:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return base.JobStatus(state, state.value, state.value)

    def logs(self, handle: str, tail: int | None = None) -> str:
        if not self.log_texts:
            raise ClusterError("log gone")
        return self.log_texts.pop(0)


def test_waiting_reports_the_runners_cell_progress() -> None:
    line = '{{"envpack": "cell", "index": {}, "total": 4}}'
    backend = ScriptedBackend(
        [
            JobState.PENDING,
            JobState.RUNNING,
            JobState.RUNNING,
            JobState.RUNNING,
            JobState.SUCCEEDED,
        ],
        ["starting", line.format(0), f"{line.format(0)}\nprint\n{line.format(2)}\nnoise {{"],
    )
    events: list[Any] = []
    status = base.wait_for(backend, "h", timeout=10, poll=0.01, reporter=events.append)
    assert status.state is JobState.SUCCEEDED
    progress = [(e.message, e.progress) for e in events if e.kind == "progress"]
    assert progress == [("running cell 1 of 4", 0.0), ("running cell 3 of 4", 0.5)]


def test_waiting_times_out_with_a_clear_error() -> None:
    backend = ScriptedBackend([JobState.PENDING], [])
    with pytest.raises(ClusterError, match="did not finish within"):
        base.wait_for(backend, "h", timeout=0.05, poll=0.01)


@pytest.mark.parametrize(
    "text",
    [
        '{"envpack": "cell", "index": 5, "total": 2}',
        "{not json",
        '{"envpack": "done", "total": 3}',
        "",
    ],
)
def test_cell_progress_ignores_other_lines(text: str) -> None:
    assert base.cell_progress(text) is None


@pytest.mark.reliability("G3")
def test_a_stream_broken_mid_push_is_a_registry_error() -> None:
    import requests.exceptions

    def broken() -> Any:
        yield {"status": "Pushing", "id": "a"}
        raise requests.exceptions.ChunkedEncodingError("connection reset")

    client = fake_client([])
    client.api.push = lambda repository, **kwargs: broken()
    with pytest.raises(RegistryError, match="broke during the push") as info:
        push_image("envpack/nb:1", "127.0.0.1:5000", client=client)
    assert "push again" in (info.value.hint or "")
