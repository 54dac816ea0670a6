"""Base images pinned by registry digest (issue 13.3), with the local registry on 127.0.0.1:5000."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_envpack.image import BuildOptions, build_image
from jupyter_envpack.image.basepin import pin_base_image
from jupyter_envpack.image.build import prepare_context
from jupyter_envpack.snapshot import take_snapshot

pytestmark = pytest.mark.docker
REGISTRY = "127.0.0.1:5000"


@pytest.fixture
def pushed_base(docker_client: Any, test_base_image: str) -> Iterator[tuple[str, str]]:
    """The offline base pushed to the local registry under a test name, pulled back: (ref, digest)."""
    repo = f"{REGISTRY}/envpack-test-h/debian-python"
    tag = f"t{secrets.token_hex(4)}"
    ref = f"{repo}:{tag}"
    docker_client.images.get(test_base_image).tag(repo, tag)
    try:
        for line in docker_client.api.push(repo, tag, stream=True, decode=True):
            assert "error" not in line, line
        docker_client.api.remove_image(ref)
        docker_client.images.pull(repo, tag=tag)
        digests = docker_client.api.inspect_image(ref)["RepoDigests"]
        digest = next(d for d in digests if d.startswith(repo + "@")).split("@", 1)[1]
        yield ref, digest
    finally:
        docker_client.api.remove_image(ref, force=False)


def test_a_registry_base_is_pinned_by_digest_inside_the_built_image(
    docker_client: Any, pushed_base: tuple[str, str], make_notebook: Any, test_labels: Any
) -> None:
    ref, digest = pushed_base
    pinned = pin_base_image(docker_client, ref)
    assert pinned.ref == f"{ref}@{digest}" and pinned.digest == digest and pinned.warning is None
    path = make_notebook(["import yaml"])
    spec = take_snapshot(path, python=sys.executable)
    opts = BuildOptions(base_image=pinned.ref, labels=test_labels)
    ctx = prepare_context(spec, path, opts, wheels=False)
    assert f"FROM {ref}@{digest}" in ctx.files["Dockerfile"].decode()
    assert f"# Base image: {ref}@{digest}" in ctx.files["envpack/requirements.lock"].decode()
    result = build_image(spec, path, BuildOptions(base_image=ref, labels=test_labels))
    assert result.base_image == f"{ref}@{digest}"
    labels = docker_client.api.inspect_image(result.image)["Config"]["Labels"]
    assert labels["org.opencontainers.image.base.digest"] == digest
    assert labels["org.opencontainers.image.base.name"] == f"{ref}@{digest}"


def test_a_local_only_base_is_recorded_by_id_with_a_warning(
    docker_client: Any, shared_image: tuple[str, Path], test_base_image: str
) -> None:
    pinned = pin_base_image(docker_client, test_base_image)
    base_id = docker_client.api.inspect_image(test_base_image)["Id"]
    if docker_client.api.inspect_image(test_base_image).get("RepoDigests"):
        pytest.fail("the offline base has a registry digest here: this test needs a local-only one")
    assert pinned.digest is None and pinned.image_id == base_id
    assert "cannot pull" in (pinned.warning or "")
    labels = docker_client.api.inspect_image(shared_image[0])["Config"]["Labels"]
    assert labels["org.jupyter.envpack.base.id"] == base_id
