"""The wheel server cannot be impersonated (issue 10.3, RELIABILITY L3), on the real engine.

A real impostor binds the saved port first; real bytes are swapped in the wheel cache after the
hashes were recorded (what an impostor on the port would serve): the build never installs them.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from wheel_builder import write_wheel

from jupyter_envpack.errors import BuildError
from jupyter_envpack.events import ProgressEvent
from jupyter_envpack.image import BuildOptions, build_image
from jupyter_envpack.image.dockerfile import ENV_PREFIX
from jupyter_envpack.image.wheels import cache_dir, target_arch
from jupyter_envpack.image.wheelserver import bridge_gateway, served_url
from jupyter_envpack.snapshot.spec import EnvSpec, PinnedPackage

pytestmark = pytest.mark.docker
LABEL = "org.jupyter.envpack"


def impostor_wheel(path: Path, name: str = "six", version: str = "1.15.0") -> bytes:
    """A valid wheel named like the real one whose module says IMPOSTOR."""
    files = {
        f"{name}.py": b"IMPOSTOR = True\n__version__ = '" + version.encode() + b"'\n",
        f"{name}-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
        ),
        f"{name}-{version}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py2-none-any\n"
            b"Tag: py3-none-any\n"
        ),
    }
    write_wheel(path, files)
    return path.read_bytes()


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    """A wheel cache of this test only (its serve.json port is the test's to squat)."""
    monkeypatch.setenv("ENVPACK_WHEEL_CACHE", str(tmp_path / "wheels"))
    return cache_dir("3.11", target_arch())


def six_spec(path: Path) -> EnvSpec:
    return EnvSpec(
        notebook=str(path),
        python_version="3.11.7",
        packages=[PinnedPackage("six", "1.15.0", True)],
    )


def six_inside(client: Any, image: str, labels: dict[str, str]) -> str:
    code = "import six; print(getattr(six, 'IMPOSTOR', False), six.__version__)"
    out = client.containers.run(
        image,
        [f"{ENV_PREFIX}/bin/python", "-c", code],
        remove=True,
        entrypoint=[],
        network_disabled=True,
        labels={LABEL: "1", **labels},
    )
    return str(out.decode().strip())


@pytest.mark.reliability("L3")
@pytest.mark.timeout(900)
def test_an_impostor_on_the_saved_port_is_never_trusted(
    docker_client, test_base_image, make_notebook, private_cache, tmp_path, test_labels
) -> None:
    gateway = bridge_gateway(docker_client)
    assert gateway, "the engine's bridge gateway must be bindable here"
    url = served_url(private_cache, gateway)
    port = int(url.split(":")[2].split("/")[0])
    fake = impostor_wheel(tmp_path / "six-1.15.0-py2.py3-none-any.whl")
    hits: list[str] = []

    class Impostor(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            body = (
                fake
                if self.path.endswith(".whl")
                else b"<a href='six-1.15.0-py2.py3-none-any.whl'>x</a>"
            )
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer((gateway, port), Impostor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        path = make_notebook(["import six"], name="squat.ipynb")
        events: list[ProgressEvent] = []
        opts = BuildOptions(base_image=test_base_image, labels=test_labels)
        result = build_image(
            six_spec(path), path, opts, reporter=events.append, client=docker_client
        )
        again = build_image(six_spec(path), path, opts, client=docker_client)
    finally:
        server.shutdown()
        server.server_close()
    assert hits == []  # nothing was ever asked of the impostor
    assert again.cached and again.image == result.image  # the copy-built image is found again
    assert any("copying the wheels instead" in e.message for e in events)
    assert six_inside(docker_client, result.image, test_labels) == "False 1.15.0"
    assert json.loads((private_cache / "serve.json").read_text())["port"] == port  # kept: the
    # next build serves there again once envpack itself can bind it


@pytest.mark.reliability("L3")
@pytest.mark.timeout(900)
@pytest.mark.parametrize("target", ["six-1.15.0-", "uv-"])
def test_a_wheel_swapped_after_fetch_fails_the_build_with_a_hash_mismatch(
    docker_client, test_base_image, make_notebook, private_cache, tmp_path, target
) -> None:
    """What an impostor serving a different wheel under the same name does, byte for byte."""
    path = make_notebook([f"import six  # {target}"], name="swap.ipynb")
    swapped: list[str] = []

    def swap(event: ProgressEvent) -> None:  # after the hashes were checked, before uv fetches
        if event.message.startswith("building ") and not swapped:
            wheel = next(private_cache.glob(f"{target}*.whl"))
            impostor_wheel(wheel, *(("six", "1.15.0") if target.startswith("six") else ("uv", "0")))
            swapped.append(wheel.name)

    with pytest.raises(BuildError) as info:
        build_image(
            six_spec(path),
            path,
            BuildOptions(base_image=test_base_image, wheels_via="serve"),
            reporter=swap,
            client=docker_client,
        )
    assert swapped, "the swap must have happened"
    assert info.value.reason == "hash-mismatch"
    named = swapped[0] if target == "uv-" else "six"
    assert named in str(info.value)
    assert docker_client.images.list(name="envpack/swap") == []  # nothing was tagged


@pytest.mark.reliability("L3")
def test_a_lock_whose_hash_the_index_does_not_serve_fails_the_build(
    make_notebook, test_base_image
) -> None:
    """CI rebuilds what the lock's author had, or nothing: a fetched wheel whose sha256 is not the
    one ``NB.envpack.lock`` records fails the build, naming it (issue 15.3)."""
    import os
    import re
    import subprocess
    import sys

    path = make_notebook(["import yaml\nprint(yaml.safe_dump({'a': 1}))"], name="locked.ipynb")
    cli = [sys.executable, "-m", "jupyter_envpack.cli"]
    env = {**os.environ, "ENVPACK_BASE_IMAGE": test_base_image}
    made = subprocess.run(
        [*cli, "lock", str(path), "--python", sys.executable],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert made.returncode == 0, made.stderr[-2000:]
    lock = path.with_name("locked.envpack.lock")
    text = lock.read_text()
    line = next(x for x in text.splitlines() if x.lower().startswith("pyyaml=="))
    assert "--hash=sha256:" in line, line
    lock.write_text(text.replace(line, re.sub(r"sha256:[0-9a-f]{64}", "sha256:" + "0" * 64, line)))
    built = subprocess.run(
        [*cli, "build", str(path), "-q"], capture_output=True, text=True, env=env, timeout=900
    )
    assert built.returncode == 2, (built.returncode, built.stderr[-2000:])
    assert "does not have a sha256 the lock file records for pyyaml" in built.stderr
