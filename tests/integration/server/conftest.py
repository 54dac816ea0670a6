"""Fixtures for the server's real-Docker tests: an in-process server (pytest-jupyter) with the
real kinds, and a factory of ``jupyter server`` subprocesses for restart tests (§4.7)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
OP_LABEL = "org.jupyter.envpack.operation"


@pytest.fixture
def op_cleanup(docker_client: Any) -> Iterator[list[str]]:
    """Operation ids a test created: their labelled containers and images go afterwards."""
    import docker.errors

    ids: list[str] = []
    yield ids
    for op_id in ids:
        label = {"label": f"{OP_LABEL}={op_id}"}
        for c in docker_client.containers.list(all=True, filters=label):
            c.remove(force=True, v=True)
        for image in docker_client.images.list(filters=label):
            for tag in image.tags:
                with contextlib.suppress(docker.errors.APIError):  # in use by a parallel test
                    docker_client.images.remove(tag)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerProcess:
    """``jupyter server`` in a subprocess with a fixed root, data dir, port and token."""

    def __init__(self, base: Path, root: Path) -> None:
        self.base, self.root = base, root
        self.port = _free_port()
        self.token = os.urandom(12).hex()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = base / "server.log"
        config = base / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "jupyter_server_config.json").write_text(
            json.dumps(
                {
                    "ServerApp": {
                        "jpserver_extensions": {
                            "jupyter_envpack": True,
                            "jupyter_server_terminals": False,
                        },
                        "root_dir": str(root),
                        "port": self.port,
                        "port_retries": 0,
                        "open_browser": False,
                        "allow_root": True,
                        "allow_unauthenticated_access": False,
                    },
                    "IdentityProvider": {"token": self.token},
                    "EnvPack": {"database_path": str(base / "data" / "operations.sqlite")},
                }
            )
        )
        self.env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(config),
            "JUPYTER_DATA_DIR": str(base / "data"),
            "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        }

    def start(self, timeout: float = 60) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jupyter_server"],
                env=self.env,
                stdout=log,
                stderr=log,
                cwd=self.root,
            )
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                if self.request("GET", "envpack/status")[0] == 200:
                    return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            time.sleep(0.3)
        raise AssertionError("server did not start:\n" + self.log.read_text()[-3000:])

    def kill(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"server ignored signal {sig}") from None

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/{path}",
            data=data,
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - local test server
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def wait_op(self, op_id: str, states: set[str], timeout: float) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while True:
            code, op = self.request("GET", f"envpack/operations/{op_id}")
            assert code == 200, op
            if op["state"] in states:
                return op
            assert time.monotonic() < end, f"operation stuck in {op['state']}: {op}"
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[ServerProcess]:
    """A stopped server (``.start()`` it); its root is ``tmp_path / "root"``."""
    root = tmp_path / "root"
    root.mkdir()
    server = ServerProcess(tmp_path / "server", root)
    yield server
    server.stop()
