"""Building images on the real engine (RELIABILITY D7, E1-E3, F4, F6, F9, F10, F12)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import threading
import time
from typing import Any

import nbformat
import pytest
from wheel_builder import canary_wheel, serve_guarded_index

from jupyter_envpack.errors import BuildError, CancelledError
from jupyter_envpack.events import CancelToken, ProgressEvent
from jupyter_envpack.image import BuildOptions, build_image
from jupyter_envpack.image.build import _stream_build
from jupyter_envpack.image.context import BuildContext
from jupyter_envpack.snapshot import take_snapshot
from jupyter_envpack.snapshot.spec import EnvSpec, PinnedPackage

pytestmark = pytest.mark.docker
LABEL = "org.jupyter.envpack"


def raw_context(dockerfile: str, repo: str = "envpack-test/raw") -> BuildContext:
    return BuildContext(
        files={"Dockerfile": dockerfile.encode()},
        repository=repo,
        env_lock=[],
        runner_lock=[],
        python_minor="3.11",
    )


def build_containers(client: Any) -> set[str]:
    return {c.id for c in client.containers.list(all=True)}


@pytest.mark.reliability("D7", "F12")
def test_build_labels_user_cache_and_cli(
    docker_client, test_base_image, shared_image, make_notebook
) -> None:
    image, path = shared_image
    attrs = docker_client.api.inspect_image(image)
    assert attrs["Config"]["User"] == "1000:1000"
    labels = attrs["Config"]["Labels"]
    assert labels[LABEL] == "1" and labels[f"{LABEL}.kind"] == "build"
    assert labels["org.opencontainers.image.base.name"] == test_base_image
    spec = take_snapshot(path, python=sys.executable)
    assert labels[f"{LABEL}.snapshot"] == spec.hash
    # an unchanged environment + notebook is never rebuilt; the CLI prints the image last
    foreign = docker_client.containers.create(test_base_image, "true", labels={"someone.else": "1"})
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "jupyter_envpack.cli",
                "build",
                str(path),
                "--python",
                sys.executable,
                "--base-image",
                test_base_image,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip().splitlines()[-1] == image
        assert "cached" in proc.stderr
        docker_client.containers.get(foreign.id)  # nothing of ours touched a foreign container
    finally:
        foreign.remove(force=True)


def test_notebook_only_edit_rebuilds_no_dependency_layer(
    docker_client, test_base_image, make_notebook
) -> None:
    path = make_notebook(["import yaml\nprint(1)"], name="edit.ipynb")
    opts = BuildOptions(base_image=test_base_image)
    build_image(take_snapshot(path), path, opts, client=docker_client)
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source = "import yaml\nprint(2)"
    nbformat.write(nb, path)
    events: list[ProgressEvent] = []
    result = build_image(
        take_snapshot(path), path, opts, reporter=events.append, client=docker_client
    )
    assert not result.cached
    steps: list[list[Any]] = []  # [instruction, served from cache?]
    for e in events:
        if e.stage != "build":
            continue
        if e.kind == "step" and e.message.startswith("step "):
            steps.append([e.message, False])
        elif "Using cache" in e.message and steps:
            steps[-1][1] = True
    dependency = [
        c
        for s, c in steps
        if any(k in s for k in ("install_env", "wheels", ".lock", "--from=envpack-deps"))
    ]
    assert len(dependency) >= 2 and all(dependency), steps
    [notebook_layer] = [c for s, c in steps if "work/ /home/envpack/work/" in s]
    assert notebook_layer is False


@pytest.mark.reliability("F4")
def test_a_failing_step_names_the_step_and_leaves_no_container(
    docker_client, test_base_image
) -> None:
    before = build_containers(docker_client)
    ctx = raw_context(
        f"FROM {test_base_image}\nRUN echo building && echo about to fail >&2 && exit 7\n"
    )
    with pytest.raises(BuildError) as info:
        _stream_build(docker_client, ctx, BuildOptions(), lambda e: None, None)
    assert (info.value.step or "").startswith(
        "step 2/"
    ) and "returned a non-zero code: 7" in info.value.message
    assert any("about to fail" in ln for ln in info.value.log_tail)
    assert build_containers(docker_client) <= before


@pytest.mark.reliability("F4")
def test_a_pin_that_cannot_be_fetched_fails_before_building(
    docker_client, test_base_image, make_notebook
) -> None:
    path = make_notebook(["print(1)"], name="nowheel.ipynb")
    spec = EnvSpec(
        notebook=str(path),
        python_version="3.11.7",
        packages=[PinnedPackage("nonexistent-zzz-envpack", "1.0", True)],
    )
    with pytest.raises(BuildError) as info:
        build_image(spec, path, BuildOptions(base_image=test_base_image), client=docker_client)
    assert info.value.step == "wheels" and "nonexistent-zzz-envpack==1.0" in info.value.message


@pytest.mark.reliability("F4", "F9")
def test_a_base_with_another_python_fails_before_any_wheel_is_fetched(
    docker_client, test_base_image, make_notebook, tmp_path, monkeypatch
) -> None:
    # Given a notebook whose environment is Python 3.12 and the offline base, which has 3.11
    monkeypatch.setenv("ENVPACK_WHEEL_CACHE", str(tmp_path / "wheels"))
    path = make_notebook(["print(1)"], name="py312.ipynb")
    spec = EnvSpec(notebook=str(path), python_version="3.12.4")
    # When it is built, Then the plan fails naming both Pythons and the fix, and nothing was fetched
    with pytest.raises(BuildError) as info:
        build_image(spec, path, BuildOptions(base_image=test_base_image), client=docker_client)
    err = info.value
    assert err.reason == "python-mismatch" and err.step == "plan"
    assert "Python 3.11." in err.message and "Python 3.12" in err.message
    assert "--base-image" in (err.hint or "")
    assert not any((tmp_path / "wheels").rglob("*.whl"))


@pytest.mark.reliability("F9")
def test_a_missing_base_image_is_a_clear_failure(docker_client, make_notebook) -> None:
    path = make_notebook(["print(1)"], name="nobase.ipynb")
    spec = EnvSpec(notebook=str(path), python_version="3.11.7")
    started = time.monotonic()
    with pytest.raises(BuildError) as info:
        build_image(
            spec,
            path,
            BuildOptions(base_image="envpack-test/does-not-exist:1"),
            client=docker_client,
        )
    assert info.value.reason == "pull-failed" and "--base-image" in (info.value.hint or "")
    assert time.monotonic() - started < 120


@pytest.mark.reliability("F6")
def test_cancel_stops_the_build_and_its_container(docker_client, test_base_image) -> None:
    marker = f"envpack-cancel-{time.time_ns()}"
    ctx = raw_context(f"FROM {test_base_image}\nRUN echo {marker} && sleep 300\n")
    token = CancelToken()
    threading.Timer(4, token.cancel).start()
    started = time.monotonic()
    with pytest.raises(CancelledError):
        _stream_build(docker_client, ctx, BuildOptions(), lambda e: None, token)
    assert time.monotonic() - started < 20
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        running = [
            c
            for c in docker_client.containers.list(all=True)
            if marker in " ".join(c.attrs["Config"].get("Cmd") or [])
        ]
        if not running:
            break
        time.sleep(1)
    assert running == []


@pytest.mark.reliability("F10")
def test_the_build_deadline_is_enforced(docker_client, test_base_image) -> None:
    ctx = raw_context(f"FROM {test_base_image}\nRUN sleep 120 # {time.time_ns()}\n")
    with pytest.raises(BuildError) as info:
        _stream_build(docker_client, ctx, BuildOptions(deadline=5), lambda e: None, None)
    assert info.value.reason == "timeout"


@pytest.mark.reliability("E1", "E2", "E3")
def test_private_index_credentials_never_reach_the_image(
    docker_client, test_base_image, make_notebook, httpserver, tmp_path, monkeypatch
) -> None:
    canary = "CANARYpw9931"
    user = "envpackuser"
    wheel = canary_wheel(tmp_path)
    serve_guarded_index(httpserver, wheel, user, canary)
    index = f"http://{user}:{canary}@127.0.0.1:{httpserver.port}/simple"
    # a docker config whose proxy URL carries the canary too (E3)
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    (docker_config / "config.json").write_text(
        json.dumps({"proxies": {"default": {"httpProxy": f"http://p:{canary}@127.0.0.1:9"}}})
    )
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    monkeypatch.setenv("ENVPACK_WHEEL_CACHE", str(tmp_path / "wheels"))
    path = make_notebook(["import envpack_canary_pkg"], name="private.ipynb")
    spec = EnvSpec(
        notebook=str(path),
        python_version="3.11.7",
        packages=[PinnedPackage("envpack-canary-pkg", "1.0", True)],
    )
    events: list[ProgressEvent] = []
    result = build_image(
        spec,
        path,
        BuildOptions(base_image=test_base_image, extra_index_urls=(index,)),
        reporter=events.append,
        client=docker_client,
    )
    assert any(wheel.name in e.message for e in events)  # it really came from the private index
    saved = b"".join(docker_client.images.get(result.image).save())
    with tarfile.open(fileobj=io.BytesIO(saved)) as outer:
        blobs = [outer.extractfile(m).read() for m in outer.getmembers() if m.isfile()]
    layers = b""
    for blob in blobs:
        try:
            with tarfile.open(fileobj=io.BytesIO(blob)) as layer:
                layers += b"".join(
                    layer.extractfile(m).read() for m in layer.getmembers() if m.isfile()
                )
        except tarfile.ReadError:
            layers += blob
    assert b"VALUE = 42" in layers  # the package is in the image...
    assert canary.encode() not in layers  # ...its index password is not
    history = json.dumps(docker_client.api.history(result.image))
    inspect = json.dumps(docker_client.api.inspect_image(result.image))
    logs = json.dumps([e.message for e in events])
    for where in (history, inspect, logs):
        assert canary not in where
