"""Shared fixtures: the real Docker engine, the offline base image, notebook factories.

Under CI (``CI=true``) a missing engine or base image is a failure, never a skip: ``.ci/provision``
installs them, so a skip there would hide a broken install step (RELIABILITY.md §4.8).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TEST_BASE_IMAGE = os.environ.get("ENVPACK_TEST_BASE_IMAGE", "envpack-test/debian-python:bookworm")
TEST_REGISTRY = os.environ.get("ENVPACK_TEST_REGISTRY", "127.0.0.1:5000")
LABEL = "org.jupyter.envpack"


@pytest.fixture
def envpack_db(tmp_path: Path) -> Path:
    """The operations database of a test's server (a module may override it)."""
    return tmp_path / "data" / "operations.sqlite"


@pytest.fixture
def envpack_config() -> dict[str, Any]:
    """Extra ``c.EnvPack`` values of a test's server (a module overrides this, not the config)."""
    return {}


@pytest.fixture
def jp_server_config(envpack_db: Path, envpack_config: dict[str, Any]) -> Any:
    """The one server config of every pytest-jupyter test: the envpack extension, no terminals,
    no unauthenticated access, a temporary operations database, no extra kinds unless
    ``envpack_config`` names them."""
    from traitlets.config import Config

    return Config(
        {
            # terminals off: its websocket handler trips the (error-escalated) auth warning
            "ServerApp": {
                "jpserver_extensions": {"jupyter_envpack": True, "jupyter_server_terminals": False},
                "allow_unauthenticated_access": False,
            },
            "EnvPack": {"database_path": str(envpack_db), "operation_kinds": {}, **envpack_config},
        }
    )


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} (CI provisions it: see .ci/provision)")
    pytest.skip(f"{what}; run `bash .ci/provision` to install it")


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A docker-py client for the machine's engine (fails under CI when there is none)."""
    import docker

    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:
        _missing(f"no Docker engine answers ({type(exc).__name__})")
    yield client
    client.close()


@pytest.fixture(scope="session")
def test_base_image(docker_client: Any) -> str:
    """The offline base image (Debian + python3 + venv) that tests build on."""
    import docker.errors

    try:
        docker_client.images.get(TEST_BASE_IMAGE)
    except docker.errors.ImageNotFound:
        _missing(f"base image {TEST_BASE_IMAGE} is not built")
    return TEST_BASE_IMAGE


@pytest.fixture
def make_notebook(tmp_path: Path) -> Callable[..., Path]:
    """Write a v4 notebook whose code cells are ``cells`` and return its path.

    A cell given as ``(source, outputs)`` keeps those outputs and gets an execution count.
    """

    def make(
        cells: list[Any],
        name: str = "nb.ipynb",
        folder: Path | None = None,
        kernel: str = "python3",
        language: str = "python",
    ) -> Path:
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": language}
        nb.metadata["language_info"] = {"name": language}
        for i, cell in enumerate(cells):
            source, outputs = (cell, None) if isinstance(cell, str) else cell
            c = nbformat.v4.new_code_cell(source)
            if outputs is not None:
                c.outputs = [nbformat.from_dict(o) for o in outputs]
                c.execution_count = i + 1
            nb.cells.append(c)
        path = (folder or tmp_path) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, path)
        return path

    return make


@pytest.fixture(scope="session")
def kernel_python() -> str:
    """The interpreter running the tests (it has nbformat, packaging, ... installed)."""
    return sys.executable


HOSTILE_SETTINGS = (
    "core.fsmonitor",
    "core.hooksPath",
    "filter.x.clean",
    "filter.x.smudge",
    "filter.x.process",
    "diff.external",
    "diff.x.command",
    "core.sshCommand",
    "core.pager",
    "core.editor",
    "credential.helper",
)


@pytest.fixture
def hostile_repo() -> Callable[[Path], Path]:
    """Turn ``folder`` (holding a notebook) into a git repository whose ``.git/config`` and
    ``.gitattributes`` point every command-running setting at ``sh -c 'touch <folder>/../MARKER-*'``
    (RELIABILITY L2). The notebook is committed, then changed, so a status check must look at it.
    Returns the folder where markers would appear."""
    import subprocess

    def make(folder: Path) -> Path:
        marks = folder.parent / "markers"
        marks.mkdir(exist_ok=True)

        def git(*args: str) -> None:
            subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)

        git("init", "-q", "-b", "main")
        git("remote", "add", "origin", "git@github.com:envpack-test/demo.git")
        (folder / ".gitattributes").write_text("* filter=x diff=x\n")
        git("-c", "user.email=t@e.org", "-c", "user.name=T", "add", ".")
        git("-c", "user.email=t@e.org", "-c", "user.name=T", "commit", "-qm", "nb")
        hooks = folder / "hooks"
        hooks.mkdir()
        for name, setting in enumerate(HOSTILE_SETTINGS):
            command = f"sh -c 'touch {marks}/MARKER-{name}; cat'"
            git("config", setting, str(hooks) if setting == "core.hooksPath" else command)
        for hook in ("post-index-change", "reference-transaction", "fsmonitor-watchman"):
            (hooks / hook).write_text(f"#!/bin/sh\ntouch {marks}/MARKER-hook-{hook}\n")
            (hooks / hook).chmod(0o755)
        for nb in folder.glob("*.ipynb"):
            nb.write_text(nb.read_text().replace('"cells": [', '"cells": [ ', 1))
        return marks

    return make


_AUDITED: list[tuple[frozenset[str], list[list[str]]]] = []
SPAWN_EVENTS = frozenset({"subprocess.Popen", "os.posix_spawn", "os.exec", "os.fork", "os.system"})


def _audit(event: str, args: tuple[Any, ...]) -> None:
    for names, seen in _AUDITED:
        if event in names:
            seen.append([event, *(str(a)[:200] for a in args[:2])])


@pytest.fixture(scope="session")
def _audit_hook() -> None:
    sys.addaudithook(_audit)  # cannot be removed: it records only while a test asks


@pytest.fixture
def audited(_audit_hook: None) -> Iterator[Callable[[frozenset[str]], list[list[str]]]]:
    """``audited(names)`` → a list that receives every audit event named (``[event, args]``)
    until the test ends, e.g. ``os.chmod``."""
    mine: list[tuple[frozenset[str], list[list[str]]]] = []

    def start(names: frozenset[str]) -> list[list[str]]:
        entry: tuple[frozenset[str], list[list[str]]] = (names, [])
        mine.append(entry)
        _AUDITED.append(entry)
        return entry[1]

    yield start
    for entry in mine:
        _AUDITED.remove(entry)


@pytest.fixture
def spawned(audited: Callable[[frozenset[str]], list[list[str]]]) -> list[list[str]]:
    """Every process this Python process starts during the test (audit events, so no module's
    own ``from subprocess import Popen`` escapes it)."""
    return audited(SPAWN_EVENTS)


CANARY_TEXT = "export PATH=/usr/bin  # the user's own file\n"


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A file outside the notebook's folder standing in for ``~/.bashrc`` (RELIABILITY L1)."""
    home = tmp_path / "home"
    home.mkdir()
    path = home / ".bashrc"
    path.write_text(CANARY_TEXT)
    return path


@pytest.fixture
def untouched() -> Callable[[Path, Path], bool]:
    """``untouched(canary, link)``: the canary kept its text and the planted link is still a link."""

    def check(canary: Path, link: Path) -> bool:
        return canary.read_text() == CANARY_TEXT and link.is_symlink()

    return check
