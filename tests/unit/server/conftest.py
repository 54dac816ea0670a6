"""Server fixtures: a jupyter_server with the envpack extension, a temp DB and a fake kind.

The fake kind is a small real :class:`~jupyter_envpack.operations.Kind` (injected through the
extension's settings), so the manager, store, handlers and event stream run for real; only the
core's Docker work is replaced.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest

from jupyter_envpack.errors import BuildError, CancelledError, InputError
from jupyter_envpack.events import CancelToken, ProgressEvent
from jupyter_envpack.operations import Kind

FAKE_OPTIONS = {"wait", "fail", "crash", "lines", "tag"}


class FakeWork:
    """Controls and records of the ``fake`` kind (``options.wait`` blocks until ``release``)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls: list[str] = []
        self.running = 0
        self.max_running = 0
        self._lock = threading.Lock()

    def validate(self, options: dict[str, Any]) -> dict[str, Any]:
        unknown = set(options) - FAKE_OPTIONS
        if unknown:
            raise InputError(f"unknown fake option(s) {sorted(unknown)}")
        return options

    def run(
        self, op: Any, reporter: Callable[[ProgressEvent], None], cancel: CancelToken
    ) -> dict[str, Any]:
        with self._lock:
            self.calls.append(op.id)
            self.running += 1
            self.max_running = max(self.max_running, self.running)
        try:
            return self._work(op, reporter, cancel)
        finally:
            with self._lock:
                self.running -= 1

    def _work(
        self, op: Any, reporter: Callable[[ProgressEvent], None], cancel: CancelToken
    ) -> dict[str, Any]:
        reporter(ProgressEvent("fake", "started", "step", 0.1))
        opts = op.options
        if opts.get("fail"):
            raise BuildError("fake build failed", step="RUN false", log_tail=["boom"])
        if opts.get("crash"):
            raise RuntimeError(f"unexpected crash in {op.notebook}")  # a server path: must not leak
        while opts.get("wait") and not self.release.is_set():
            if cancel.wait(0.02):
                raise CancelledError("fake cancelled")
        for i in range(opts.get("lines", 0)):
            reporter(ProgressEvent("fake", f"line {i} <script>alert(1)</script>"))
        return {"ok": True, "path": op.path, "notebook_name": op.notebook.name}

    def kind(self, name: str = "fake") -> Kind:
        return Kind(name, self.run, validate=self.validate, dedupe=True)


@pytest.fixture
def fake_work() -> FakeWork:
    work = FakeWork()
    yield work
    work.release.set()


@pytest.fixture
def envpack_service(jp_serverapp: Any, fake_work: FakeWork) -> Any:
    """The running extension's service, with the ``fake`` kind registered."""
    service = jp_serverapp.web_app.settings["envpack_service"]
    if service.manager is not None:
        service.manager.register_kind(fake_work.kind())
    return service


@pytest.fixture
def jp_fetch(jp_fetch: Any, envpack_service: Any) -> Any:
    """pytest-jupyter's ``jp_fetch``, once the fake kind is registered."""
    return jp_fetch


@pytest.fixture
def notebook(jp_root_dir: Path) -> Path:
    """A small notebook at the root: ``nb.ipynb``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells.append(nbformat.v4.new_code_cell("import json\nprint(json.dumps(1))"))
    path = jp_root_dir / "nb.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def wait_op(jp_fetch: Callable[..., Any]) -> Callable[..., Any]:
    """``await wait_op(id, {"succeeded"})``: poll ``GET operations/<id>`` until the state is in
    the set and return the operation JSON; fail the test when ``timeout`` passes first."""

    async def wait(op_id: str, states: set[str], timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            data = json.loads((await jp_fetch("envpack", "operations", op_id)).body)
            if data["state"] in states:
                return data
            if time.monotonic() > deadline:
                pytest.fail(
                    f"operation {op_id} is {data['state']!r}, not one of {sorted(states)}, "
                    f"after {timeout} s: {data.get('error') or data.get('message')}"
                )
            await asyncio.sleep(0.05)

    return wait
