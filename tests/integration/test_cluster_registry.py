"""Registry push against real registries: Debian's docker-registry on loopback (G1, G2, E4).

- 127.0.0.1:5000 is the CI registry (.ci/provision);
- 127.0.0.1:5001 is started here with htpasswd auth (bcrypt), as in RELIABILITY.md §4.3;
- a closed port stands for an unreachable registry.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_envpack.cluster.registry import RegistryAuth, push_image
from jupyter_envpack.errors import RegistryError
from jupyter_envpack.events import ProgressEvent

pytestmark = [pytest.mark.docker, pytest.mark.registry]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TEST_REGISTRY = os.environ.get("ENVPACK_TEST_REGISTRY", "127.0.0.1:5000")
LABEL = "org.jupyter.envpack"

AUTH_ADDR = "127.0.0.1:5001"
USER = "envpack"


def _registry_up(addr: str, auth: tuple[str, str] | None = None) -> bool:
    request = urllib.request.Request(f"http://{addr}/v2/")
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=2):  # noqa: S310 - loopback http on purpose
            return True
    except urllib.error.HTTPError as exc:
        return exc.code == 401 and auth is None
    except OSError:
        return False


def tags(addr: str, repository: str, auth: tuple[str, str] | None = None) -> list[str]:
    request = urllib.request.Request(f"http://{addr}/v2/{repository}/tags/list")
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
        return list(json.load(response).get("tags") or [])


def registry_binary() -> str:
    binary = shutil.which("docker-registry")
    if binary is None:
        if IN_CI:
            pytest.fail("docker-registry is not installed (.ci/provision installs it)")
        pytest.skip("docker-registry is not installed")
    return binary


def start_registry(root: Path, addr: str, extra: str = "") -> subprocess.Popen[bytes]:
    """``docker-registry serve`` with storage under ``root``, listening on ``addr``; waits until
    the port accepts connections (the caller stops it)."""
    config = root / "config.yml"
    if not config.exists():
        config.write_text(
            "version: 0.1\n"
            f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, "
            f"delete: {{enabled: true}}}}\n{extra}"
        )
    with open(root / "registry.log", "ab") as log:
        proc = subprocess.Popen(
            [registry_binary(), "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    host, port = addr.rsplit(":", 1)
    for _ in range(60):
        with socket.socket() as sock:
            if sock.connect_ex((host, int(port))) == 0:
                return proc
        time.sleep(0.25)
    proc.kill()
    raise AssertionError(
        f"the registry on {addr} did not start: " + (root / "registry.log").read_text()[-2000:]
    )


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def registry() -> str:
    if not _registry_up(TEST_REGISTRY):
        message = f"no registry at {TEST_REGISTRY} (.ci/provision starts it)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return TEST_REGISTRY


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second docker-registry with htpasswd (bcrypt) auth; yields its password (a canary)."""
    import bcrypt

    root = tmp_path_factory.mktemp("auth-registry")
    password = secrets.token_hex(16)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()
    (root / "htpasswd").write_text(f"{USER}:{hashed}\n")
    proc = start_registry(
        root,
        AUTH_ADDR,
        f"http: {{addr: {AUTH_ADDR}}}\n"
        f"auth: {{htpasswd: {{realm: basic, path: {root / 'htpasswd'}}}}}\n",
    )
    try:
        yield password
    finally:
        stop(proc)


@pytest.fixture
def fresh_image(docker_client: Any, tmp_path: Path) -> Iterator[str]:
    """A small image with one layer no registry has seen yet (labelled, removed afterwards)."""
    marker = uuid.uuid4().hex
    (tmp_path / "marker").write_text(marker)  # one small layer (FROM scratch: fast pushes)
    (tmp_path / "Dockerfile").write_text(
        f"FROM scratch\nLABEL {LABEL}=1 {LABEL}.kind=test\nCOPY marker /envpack-marker\n"
    )
    repo = f"envpack/registry-test-{marker[:8]}"
    docker_client.images.build(path=str(tmp_path), tag=f"{repo}:t1", rm=True, forcerm=True)
    yield f"{repo}:t1"
    import docker.errors

    for image in docker_client.images.list(filters={"label": f"{LABEL}.kind=test"}):
        for tag in image.tags:
            if repo in tag:
                with contextlib.suppress(docker.errors.ImageNotFound):
                    docker_client.images.remove(tag)


def test_push_then_repush_uploads_nothing(
    docker_client: Any, registry: str, fresh_image: str
) -> None:
    events: list[ProgressEvent] = []
    first = push_image(fresh_image, registry, client=docker_client, reporter=events.append)
    assert first.pushed, "the new layer must be uploaded"
    assert first.digest and first.digest.startswith("sha256:")
    repository, tag = fresh_image.split(":")
    assert tag in tags(registry, repository)
    again = push_image(fresh_image, registry, client=docker_client)
    assert again.uploaded_nothing and again.existing
    assert again.digest == first.digest
    assert first.reference == f"{registry}/{fresh_image}"


@pytest.mark.reliability("G1")
@pytest.mark.reliability("E4")
def test_wrong_password_fails_clearly_without_leaking(
    docker_client: Any, auth_registry: str, fresh_image: str, caplog: pytest.LogCaptureFixture
) -> None:
    canary = "wrong-" + secrets.token_hex(16)
    events: list[ProgressEvent] = []
    caplog.set_level(logging.DEBUG)
    with pytest.raises(RegistryError) as info:
        push_image(
            fresh_image,
            AUTH_ADDR,
            auth=RegistryAuth(USER, canary),
            client=docker_client,
            reporter=events.append,
        )
    error = info.value
    text = " ".join(
        [str(error), json.dumps(error.to_json()), caplog.text, *(e.message for e in events)]
    )
    assert "unauthorized" in error.message.lower() or "authentication" in error.message.lower()
    assert "docker login" in (error.hint or "")
    for secret in RegistryAuth(USER, canary).secrets():
        assert secret not in text
    # the local image is kept, so a retry with the right password is cheap
    docker_client.images.get(fresh_image)


@pytest.mark.reliability("G1")
def test_right_password_pushes(docker_client: Any, auth_registry: str, fresh_image: str) -> None:
    result = push_image(
        fresh_image, AUTH_ADDR, auth=RegistryAuth(USER, auth_registry), client=docker_client
    )
    repository, tag = fresh_image.split(":")
    assert tag in tags(AUTH_ADDR, repository, auth=(USER, auth_registry))
    assert result.pushed


@pytest.mark.reliability("G2")
def test_closed_port_is_a_clear_error(docker_client: Any, fresh_image: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(RegistryError) as info:
        push_image(fresh_image, f"127.0.0.1:{port}", client=docker_client)
    assert time.monotonic() - started < 60
    assert "connection refused" in info.value.message.lower()
    assert f"127.0.0.1:{port}" in (info.value.hint or "")
    tags_left = [t for i in docker_client.images.list() for t in i.tags]
    assert fresh_image in tags_left  # the local image stays
    assert f"127.0.0.1:{port}/{fresh_image}" not in tags_left  # no stray registry tag


def test_missing_local_image_is_a_registry_error(docker_client: Any, registry: str) -> None:
    with pytest.raises(RegistryError, match="not in the local engine"):
        push_image(
            f"envpack/does-not-exist-{uuid.uuid4().hex[:8]}:x", registry, client=docker_client
        )


WORKER = "envpack-worker1"
WORKER_SOCKET = "unix:///run/envpack-worker1.sock"


@pytest.fixture
def swarm_worker(docker_client: Any) -> Any:
    """A docker client on the swarm worker (.ci/swarm-up forwards 5001 into its namespace)."""
    import docker
    from test_cluster_swarm import ensure_swarm  # one readiness check for every swarm test

    ensure_swarm(docker_client)
    worker = docker.DockerClient(base_url=WORKER_SOCKET, timeout=30)
    yield worker
    worker.close()


def _swarm_job(image: str, auth: RegistryAuth | None) -> tuple[Any, Any, str]:
    """Submit ``image`` on the worker through a fresh client (no credentials cached)."""
    import docker

    from jupyter_envpack.cluster.base import JobSpec
    from jupyter_envpack.cluster.swarm import SwarmBackend

    client = docker.from_env(timeout=30)
    backend = SwarmBackend(client=client, constraints=("node.role==worker",), registry_auth=auth)
    tag = uuid.uuid4().hex[:10]
    spec = JobSpec(
        job_id=tag, name=f"auth-{tag}", image=image, labels={f"{LABEL}.test": f"auth-{tag}"}
    )
    return client, backend, backend.submit(spec)


@pytest.mark.swarm
@pytest.mark.reliability("G1")
@pytest.mark.reliability("E4")
def test_swarm_nodes_pull_with_explicit_credentials(
    docker_client: Any, auth_registry: str, fresh_image: str, swarm_worker: Any
) -> None:
    from jupyter_envpack.cluster.base import JobState, wait_for

    right = RegistryAuth(USER, auth_registry)
    ref = push_image(fresh_image, AUTH_ADDR, auth=right, client=docker_client).reference
    client, backend, handle = _swarm_job(ref, None)  # no credentials: the worker cannot pull
    try:
        status = wait_for(backend, handle, timeout=120, poll=0.5)
        assert (status.state, status.reason) == (JobState.FAILED, "image-pull-failed"), status
    finally:
        backend.cancel(handle)
        client.close()
    client, backend, handle = _swarm_job(ref, right)
    try:
        status = wait_for(backend, handle, timeout=120, poll=0.5)
        # the image is pulled (it has no runner, so the container itself cannot start)
        assert status.reason != "image-pull-failed", status
        swarm_worker.images.get(ref)
        spec = json.dumps(client.services.get(handle).attrs)
        assert auth_registry not in spec
    finally:
        backend.cancel(handle)
        client.close()
    with contextlib.suppress(Exception):
        swarm_worker.images.remove(ref, force=True)


@pytest.mark.swarm
@pytest.mark.reliability("E4")
def test_swarm_wrong_credentials_fail_before_the_job(
    docker_client: Any, auth_registry: str, fresh_image: str, swarm_worker: Any
) -> None:
    from jupyter_envpack.errors import ClusterError

    canary = "wrong-" + secrets.token_hex(12)
    with pytest.raises(ClusterError, match="refused the credentials") as info:
        _swarm_job(f"{AUTH_ADDR}/{fresh_image}", RegistryAuth(USER, canary))
    assert canary not in str(info.value) + json.dumps(info.value.to_json())


VETH_HOST_IP = "10.213.37.1"  # the host side of .ci/swarm-up's veth pair: not a loopback address


def _veth_up() -> None:
    with socket.socket() as sock:
        try:
            sock.bind((VETH_HOST_IP, 0))
        except OSError:
            message = f"{VETH_HOST_IP} is not on this host (.ci/swarm-up creates it)"
            if IN_CI:
                pytest.fail(message)
            pytest.skip(message)


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """docker-registry with a self-signed certificate on a non-loopback address the daemon does
    not treat as insecure: pushes must fail on TLS verification."""
    _veth_up()
    root = tmp_path_factory.mktemp("tls-registry")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=envpack-test",
            "-addext",
            f"subjectAltName=IP:{VETH_HOST_IP}",
            "-keyout",
            str(root / "key.pem"),
            "-out",
            str(root / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    addr = f"{VETH_HOST_IP}:5002"
    proc = start_registry(
        root,
        addr,
        f"http: {{addr: {addr}, tls: {{certificate: "
        f"{root / 'cert.pem'}, key: {root / 'key.pem'}}}}}\n",
    )
    try:
        yield addr
    finally:
        stop(proc)


@pytest.fixture
def trusted_ca(tls_registry: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The daemon trusts the test CA for that one registry (``/etc/docker/certs.d/<host:port>``,
    read by dockerd at each connection); removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to write /etc/docker/certs.d")
    cert = next(Path(tmp_path_factory.getbasetemp()).glob("tls-registry*/cert.pem"))
    folder = Path("/etc/docker/certs.d") / tls_registry
    folder.mkdir(parents=True, exist_ok=False)
    try:
        shutil.copy(cert, folder / "ca.crt")
        yield folder
    finally:
        shutil.rmtree(folder)


@pytest.mark.reliability("G2")
def test_a_registry_with_a_custom_ca_works_once_the_daemon_trusts_it(
    docker_client: Any, tls_registry: str, trusted_ca: Path, fresh_image: str
) -> None:
    result = push_image(fresh_image, tls_registry, client=docker_client)
    assert result.pushed and result.reference.startswith(tls_registry + "/")


@pytest.mark.reliability("G2")
def test_self_signed_tls_registry_is_a_clear_tls_error(
    docker_client: Any, tls_registry: str, fresh_image: str
) -> None:
    with pytest.raises(RegistryError) as info:
        push_image(fresh_image, tls_registry, client=docker_client)
    assert "x509" in info.value.message or "certificate" in info.value.message
    assert "CA certificate" in (info.value.hint or "")


@pytest.mark.reliability("G2")
def test_plain_http_on_a_non_loopback_address_is_refused_clearly(
    docker_client: Any, fresh_image: str
) -> None:
    """The host end of the worker's forwarder serves the CI registry over HTTP on the veth IP."""
    _veth_up()
    with pytest.raises(RegistryError) as info:
        push_image(fresh_image, f"{VETH_HOST_IP}:5000", client=docker_client)
    assert "HTTP response to HTTPS client" in info.value.message
    assert "insecure-registries" in (info.value.hint or "")


@pytest.mark.reliability("G3")
@pytest.mark.slow
def test_registry_killed_mid_push_then_repush_is_idempotent(
    docker_client: Any, test_base_image: str, tmp_path: Path
) -> None:
    """A registry that dies mid-upload: the push fails (or the daemon's own retries carry it once
    the registry is back); either way pushing again completes, and once more uploads nothing."""
    addr = "127.0.0.1:5003"
    repo = f"envpack/g3-{uuid.uuid4().hex[:8]}"
    docker_client.api.tag(test_base_image, repo, "t1")  # ≈ 190 MB: long enough to interrupt
    extra = f"http: {{addr: {addr}}}\n"

    proc = start_registry(tmp_path, addr, extra)
    outcome: list[Any] = []

    def push() -> None:
        try:
            outcome.append(push_image(f"{repo}:t1", addr, client=docker_client))
        except RegistryError as exc:
            outcome.append(exc)

    import threading

    pusher = threading.Thread(target=push)
    try:
        pusher.start()
        time.sleep(1.0)
        proc.kill()  # the registry dies mid-upload
        proc.wait(timeout=10)
        time.sleep(2.0)
        proc = start_registry(tmp_path, addr, extra)  # ... and comes back
        pusher.join(timeout=240)
        assert not pusher.is_alive(), "the interrupted push never ended"
        first = outcome[0]
        if isinstance(first, RegistryError):
            assert addr in first.message
        second = push_image(f"{repo}:t1", addr, client=docker_client)
        third = push_image(f"{repo}:t1", addr, client=docker_client)
        assert third.uploaded_nothing and third.digest == second.digest
        assert tags(addr, repo) == ["t1"]
    finally:
        proc.kill()
        proc.wait(timeout=10)
        for ref in (f"{repo}:t1", f"{addr}/{repo}:t1"):
            with contextlib.suppress(Exception):
                docker_client.images.remove(ref)
