"""Fixtures for the real-engine tier: one shared image, label-scoped cleanup."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_envpack.image import BuildOptions, build_image
from jupyter_envpack.snapshot import take_snapshot

LABEL = "org.jupyter.envpack"


@pytest.fixture(scope="session")
def shared_image(docker_client: Any, test_base_image: str, tmp_path_factory) -> tuple[str, Path]:
    """An image whose environment has PyYAML + ipykernel; any notebook using them runs in it."""
    import nbformat

    folder = tmp_path_factory.mktemp("shared")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import yaml")])
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "p"}
    path = folder / "shared.ipynb"
    nbformat.write(nb, path)
    spec = take_snapshot(path, python=sys.executable)
    result = build_image(spec, path, BuildOptions(base_image=test_base_image), client=docker_client)
    return result.image, path


@pytest.fixture
def test_labels(request) -> dict[str, str]:
    """A label unique to this test, so assertions and cleanup see only its own objects."""
    return {f"{LABEL}.test": request.node.name[:60].replace("[", "-").replace("]", "")}


@pytest.fixture(autouse=True)
def _cleanup_own_containers(request, docker_client: Any) -> Iterator[None]:
    yield
    name = request.node.name[:60].replace("[", "-").replace("]", "")
    for c in docker_client.containers.list(all=True, filters={"label": f"{LABEL}.test={name}"}):
        c.remove(force=True, v=True)  # v: the run's anonymous home volume too


@pytest.fixture
def own_containers(docker_client: Any, test_labels: dict[str, str]):
    """A function listing the containers carrying this test's label."""

    def listing() -> list[Any]:
        key, value = next(iter(test_labels.items()))
        return docker_client.containers.list(all=True, filters={"label": f"{key}={value}"})

    return listing
