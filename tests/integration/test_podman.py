"""The core on both engines: Docker, and Podman's Docker-compatible service (.ci/podman-up).

Only what really differs between the engines is run twice (a parametrised ``engine`` fixture):
the wheel transport (Podman runs build steps on the host network, Docker on its bridge), the
locked-down run container, and ``--engine-url`` through the CLI; pushing is checked on Podman.
One build and two short runs happen on Podman; the Docker side reuses cached images.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_envpack.cluster.registry import push_image
from jupyter_envpack.defaults import RUN_PIDS
from jupyter_envpack.execute import RunOptions, run_notebook
from jupyter_envpack.image.engine import engine_kind
from jupyter_envpack.image.wheelserver import bridge_gateway, build_host

pytestmark = [pytest.mark.docker, pytest.mark.podman]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PODMAN_URL = os.environ.get("ENVPACK_TEST_PODMAN_URL", "unix:///run/podman/podman.sock")
DOCKER_URL = "unix:///var/run/docker.sock"
REGISTRY = os.environ.get("ENVPACK_TEST_REGISTRY", "127.0.0.1:5000")
LABEL = "org.jupyter.envpack"
CELL = "import yaml\nprint(yaml.safe_dump({'engine': 1}))"


@pytest.fixture(scope="session")
def podman_client(test_base_image: str) -> Iterator[Any]:
    import docker

    try:
        client = docker.DockerClient(base_url=PODMAN_URL, timeout=60)
        client.ping()
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"Podman's API service does not answer at {PODMAN_URL} ({exc})")
        pytest.skip("no Podman API service; run `bash .ci/podman-up`")
    try:
        client.images.get(test_base_image)
    except docker.errors.ImageNotFound:
        pytest.fail(f"{test_base_image} is not loaded into Podman (.ci/podman-up does it)")
    yield client
    client.close()


@pytest.fixture(params=["docker", "podman"])
def engine(request: pytest.FixtureRequest, docker_client: Any) -> tuple[str, Any, str]:
    if request.param == "docker":
        return "docker", docker_client, DOCKER_URL
    return "podman", request.getfixturevalue("podman_client"), PODMAN_URL


@pytest.fixture(scope="module")
def notebook(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="engine: 1\n\n")]
    nb.cells[0].execution_count = 1
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "p"}
    path = tmp_path_factory.mktemp("engines") / "engines.ipynb"
    nbformat.write(nb, path)
    return path


_built: dict[str, tuple[str, str]] = {}


@pytest.fixture
def built(engine: tuple[str, Any, str], notebook: Path, test_base_image: str) -> tuple[str, str]:
    """(image, snapshot hash) of ``notebook``, built once per engine (in-process)."""
    from jupyter_envpack.image import BuildOptions, build_image
    from jupyter_envpack.snapshot import take_snapshot

    name, client, _ = engine
    if name not in _built:
        spec = take_snapshot(notebook, python=sys.executable)
        options = BuildOptions(base_image=test_base_image)
        _built[name] = (build_image(spec, notebook, options, client=client).image, spec.hash)
    return _built[name]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_envpack.cli", *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=cwd,
        env={**os.environ, "DOCKER_HOST": "unix:///nowhere.sock"},  # --engine-url must win
    )


@pytest.mark.reliability("F1")
def test_build_and_run_through_engine_url(
    engine: tuple[str, Any, str], built: tuple[str, str], notebook: Path
) -> None:
    name, client, url = engine
    done = _cli(
        "run",
        str(notebook),
        "--engine-url",
        url,
        "--image",
        built[0],
        "--json",
        cwd=notebook.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["run_status"] == "completed" and report["summary"] == {"same": 1}
    image = client.images.get(built[0])
    assert image.labels[f"{LABEL}.kind"] == "build"
    assert client.api.inspect_image(image.id)["Config"]["User"] == "1000:1000"
    # the wheels were served, never a layer: the RUN line names the address build steps reach
    history = " ".join(step.get("CreatedBy", "") for step in image.history())
    host = "127.0.0.1" if name == "podman" else bridge_gateway(client)
    assert engine_kind(client) == name and build_host(client) == host
    assert f"http://{host}:" in history and "envpack/wheels/" not in history


def test_the_run_container_is_locked_down(
    engine: tuple[str, Any, str], built: tuple[str, str], tmp_path: Path
) -> None:
    import nbformat

    name, client, _ = engine
    status = "import time\ntime.sleep(4)\nprint(open('/proc/self/status').read())"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(status)])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "p"}
    path = tmp_path / "sleepy.ipynb"
    nbformat.write(nb, path)
    label = f"{LABEL}.test=locked-{name}"
    seen: dict[str, Any] = {}

    def inspect() -> None:
        for _ in range(200):
            found = client.containers.list(filters={"label": label})
            if found:
                seen.update(client.api.inspect_container(found[0].id))
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=inspect)
    watcher.start()
    options = RunOptions(labels={f"{LABEL}.test": f"locked-{name}"}, mem_limit="512m")
    result = run_notebook(built[0], path, options, client=client)
    watcher.join()
    assert result.exit_code == 0
    host = seen["HostConfig"]
    assert seen["Config"]["User"] == "1000:1000"
    assert "no-new-privileges" in " ".join(host["SecurityOpt"] or [])
    assert host["PidsLimit"] == RUN_PIDS and host["Memory"] == 512 * 2**20  # the defaults
    executed = nbformat.read(result.report.output_path, as_version=4)
    proc = executed.cells[0].outputs[0]["text"]  # what the kernel itself could do
    assert "CapEff:\t0000000000000000" in proc and "NoNewPrivs:\t1" in proc
    assert client.containers.list(all=True, filters={"label": label}) == []


@pytest.mark.reliability("G1")
@pytest.mark.parametrize("engine", ["podman"], indirect=True)
def test_push_from_podman_reaches_the_registry(
    engine: tuple[str, Any, str], built: tuple[str, str]
) -> None:
    pushed = push_image(built[0], REGISTRY, client=engine[1])
    repository, tag = pushed.reference.split("/", 1)[1].rsplit(":", 1)
    request = urllib.request.Request(
        f"http://{REGISTRY}/v2/{repository}/manifests/{tag}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310 - the test registry
        digest = json.loads(resp.read())["config"]["digest"]
    blob = f"http://{REGISTRY}/v2/{repository}/blobs/{digest}"
    with urllib.request.urlopen(blob, timeout=30) as resp:
        labels = json.loads(resp.read())["config"]["Labels"]
    assert labels[f"{LABEL}.snapshot"] == built[1]  # the image itself, not only a tag
