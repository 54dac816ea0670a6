"""Fixtures for the end-to-end UI tests: a real ``jupyter lab`` and Debian's Chromium.

The lab runs as a subprocess on a free port with a fixed token, a temporary root (holding an
example notebook), and temporary config, data, settings and workspace directories, so nothing
from the developer's own Jupyter setup leaks in. The lab setting ``baseImage`` points builds at
the offline test base image (the lab settings path of the extension is what is exercised).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

# The example notebook: stdlib only (the build needs no package index), a local helper module
# (listed under "Local files"), a parameters cell, and a pause so a reload lands mid-operation.
NOTEBOOK_CELLS = [
    "# parameters\nn = 5",
    "import json\nimport math\nimport time\n\nfrom helpers import square",
    "time.sleep(6)\nprint(json.dumps([square(i) for i in range(n)]))",
    "math.sqrt(square(n))",
]
# A second notebook whose output looks like HTML: the report's diff must show it as text (A7).
MARKUP_CELLS = [
    "# parameters\nn = 5",
    # An optional import that is not installed: the snapshot warns and suggests the distribution.
    "try:\n    import sklearn\nexcept ImportError:\n    sklearn = None",
    "print(f\"<img src=x onerror='window.__pwned={n}'><script>window.__pwned=1</script>\")",
]
HELPERS = '"""Local helper module copied into the image."""\n\n\ndef square(x):\n    return x * x\n'


@dataclass
class Lab:
    """A running JupyterLab: its URL (with trailing slash), token and root directory."""

    url: str
    token: str
    root: Path
    process: subprocess.Popen[bytes]
    log_path: Path

    def api(self, path: str) -> Any:
        """GET a JSON route of the server (token auth)."""
        headers = {"Authorization": f"token {self.token}"}
        req = urllib.request.Request(self.url + path, headers=headers)  # noqa: S310 - local http
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - our own local server
            return json.loads(resp.read())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write_notebook(root: Path, name: str, cells: list[str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    nb.cells[0].metadata["tags"] = ["parameters"]
    # A unique comment makes the notebook layer new, so every session really builds something.
    nb.cells[0].source += f"\n# session {secrets.token_hex(4)}"
    # Executed here first, as a user would have: the rerun in the container is compared with it.
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=120, resources={"metadata": {"path": str(root)}}).execute()
    nbformat.write(nb, root / name)


def _write_settings(settings: Path, base_image: str) -> None:
    ours = settings / "jupyter-envpack" / "plugin.jupyterlab-settings"
    ours.parent.mkdir(parents=True)
    ours.write_text(json.dumps({"baseImage": base_image, "rerunAfterBuild": True}))
    # No news pop-up over the screenshots.
    news = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))


def _own_labextension(base: Path) -> Path:
    """A ``JUPYTER_PATH`` folder whose ``jupyter-envpack`` labextension is this checkout's build.

    The shared Python may hold a ``jupyter-envpack`` labextension of another checkout; entries of
    ``JUPYTER_PATH`` come first, so the lab serves the build of the code under test.
    """
    build = Path(__file__).parents[2] / "jupyter_envpack" / "labextension"
    if not (build / "package.json").exists():
        pytest.fail(f"{build} is missing: run `jlpm build` in this checkout first")
    folder = base / "jupyter-path"
    (folder / "labextensions").mkdir(parents=True)
    (folder / "labextensions" / "jupyter-envpack").symlink_to(build, target_is_directory=True)
    return folder


def _wait_ready(lab: Lab, deadline: float) -> None:
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            pytest.fail(f"jupyter lab exited: {lab.log_path.read_text()[-3000:]}")
        try:
            lab.api("api/status")
            return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"jupyter lab did not start: {lab.log_path.read_text()[-3000:]}")


def _remove_docker_objects(lab: Lab) -> None:
    """Remove the containers and images of this lab's operations (by their operation label)."""
    try:
        ids = [op["id"] for op in lab.api("envpack/operations?limit=1000")["operations"]]
    except OSError:
        return
    for op_id in ids:
        label = f"label=org.jupyter.envpack.operation={op_id}"
        for listing, remove in ((["ps", "-aq"], ["rm", "-f"]), (["images", "-q"], ["rmi", "-f"])):
            found = subprocess.run(
                ["docker", *listing, "--filter", label], capture_output=True, text=True, check=False
            ).stdout.split()
            if found:
                subprocess.run(["docker", *remove, *found], capture_output=True, check=False)


@contextmanager
def _running_lab(
    base: Path, base_image: str, extra_env: dict[str, str] | None = None
) -> Iterator[Lab]:
    """Run ``jupyter lab`` with jupyter-envpack on a free port in ``base``; stop it on exit."""
    root, settings = base / "root", base / "settings"
    root.mkdir()
    (root / "helpers.py").write_text(HELPERS)
    _write_notebook(root, "demo.ipynb", NOTEBOOK_CELLS)
    _write_notebook(root, "markup.ipynb", MARKUP_CELLS)
    _write_settings(settings, base_image)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTER_DATA_DIR": str(base / "data"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
        "JUPYTER_RUNTIME_DIR": str(base / "rt"),
        "JUPYTER_PATH": str(_own_labextension(base)),
        **(extra_env or {}),
    }
    port, token = _free_port(), secrets.token_hex(16)
    log_path = base / "lab.log"
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.open_browser=False",
        "--allow-root",
        f"--ServerApp.root_dir={root}",
        f"--IdentityProvider.token={token}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=base)
    lab = Lab(f"http://127.0.0.1:{port}/", token, root, process, log_path)
    try:
        _wait_ready(lab, time.monotonic() + 90)
        yield lab
    finally:
        _remove_docker_objects(lab)
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(log_path, ARTIFACTS / f"{base.name}.log")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, test_base_image: str) -> Iterator[Lab]:
    """A JupyterLab whose builds use the machine's Docker engine and the offline base image."""
    with _running_lab(tmp_path_factory.mktemp("lab"), test_base_image) as running:
        yield running


@pytest.fixture(scope="module")
def dead_engine_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A JupyterLab whose Docker engine does not answer (DOCKER_HOST is a socket nobody serves)."""
    base = tmp_path_factory.mktemp("deadlab")
    dead = {"DOCKER_HOST": f"unix://{base}/no-docker.sock"}
    with _running_lab(base, "envpack-test/debian-python:bookworm", dead) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (browsers cannot be downloaded here)."""
    if not Path(CHROMIUM).exists():
        # Under CI a missing browser is a broken install step, never a skip (RELIABILITY §4.8).
        message = f"{CHROMIUM} is not installed (.ci/provision installs it)"
        pytest.fail(message) if IN_CI else pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Remember each phase's report on the test item, so fixtures can tell a failure."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh page with a desktop-sized viewport; console errors are kept for the asserts.

    When the test fails, a screenshot and the console errors go to the artifacts folder.
    """
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.console_errors = []  # type: ignore[attr-defined]
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    yield page
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        name = request.node.name
        page.screenshot(path=str(ARTIFACTS / f"{name}-failure.png"))
        (ARTIFACTS / f"{name}-console.txt").write_text("\n".join(page.console_errors))
    context.close()


@pytest.fixture(autouse=True)
def jp_asyncio_loop() -> Iterator[None]:
    """Shadow pytest-jupyter's autouse loop fixture for the UI tests.

    The server tests register pytest-jupyter's plugin for the whole session; its autouse
    ``jp_asyncio_loop`` would try to close the event loop that sync Playwright is running.
    """
    yield None


@pytest.fixture(autouse=True)
def jp_server_cleanup() -> Iterator[None]:
    """Shadow pytest-jupyter's autouse in-process server cleanup: the UI tests' lab is a subprocess."""
    yield None
