"""Sibling notebooks share the heavy layers an earlier build wrote (issue 16 item 8): on the
engine, in a registry push and in a Swarm worker's pull. Counts are asserted, never timings.

The heavy threshold is lowered so the test's small environment (PyYAML + ipykernel's closure)
has several heavy distributions; the build itself runs for real.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from test_cluster_swarm import REGISTRY, WORKER_SOCKET, ensure_swarm

from jupyter_envpack.cluster.registry import push_image
from jupyter_envpack.image import BuildOptions, build_image
from jupyter_envpack.image import layers as layers_module
from jupyter_envpack.image.verify import verify_image
from jupyter_envpack.image.wheels import cache_dir, target_arch
from jupyter_envpack.snapshot import take_snapshot

pytestmark = [pytest.mark.docker, pytest.mark.registry, pytest.mark.swarm]
LABEL = "org.jupyter.envpack"
LAYERS = f"{LABEL}.layers"


def _build(client: Any, nb: Path, base: str) -> tuple[str, list[str], list[str]]:
    spec = take_snapshot(nb, python=sys.executable)
    image = build_image(
        spec, nb, BuildOptions(base_image=base, layers="shared"), client=client
    ).image
    attrs = client.api.inspect_image(image)
    # the versions inside the image are the lock's (raises otherwise); at most a patch-level note
    warning = verify_image(client, image, spec.requirements_lines(), spec.python_version)
    assert warning is None or warning.startswith("python-version-differs"), warning
    return image, attrs["RootFS"]["Layers"], attrs["Config"]["Labels"][LAYERS].split(" ")


def _shared_prefix(a: list[str], b: list[str]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


@pytest.fixture
def siblings(
    docker_client: Any,
    test_base_image: str,
    make_notebook: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[tuple[tuple[str, list[str], list[str]], tuple[str, list[str], list[str]], int]]:
    """Notebook A (PyYAML) and B (PyYAML + Pygments imported itself), built in that order on a
    base of their own: the engine's legacy builder takes the newest matching layer from its cache,
    and other builds on a shared engine must not fork the chain under the test.

    The wheel cache is this test's own (hard links to the machine's cache): a cache another
    process is serving makes the build copy its wheels instead, and that variant has one
    environment layer.
    """
    monkeypatch.setattr(layers_module, "HEAVY_WHEEL_BYTES", 600 * 1024)
    shared = cache_dir("3.11", target_arch())
    monkeypatch.setenv("ENVPACK_WHEEL_CACHE", str(tmp_path / "wheels"))
    own = cache_dir("3.11", target_arch())
    own.mkdir(parents=True)
    for wheel in shared.glob("*.whl") if shared.is_dir() else []:
        os.link(wheel, own / wheel.name)
    base = f"envpack-test/layer-reuse:{uuid.uuid4().hex[:12]}"
    stamp = f"{LABEL}.stamp={base[-12:]}"  # a new image id: the engine's cache would reuse one
    dockerfile = f"FROM {test_base_image}\nLABEL {LABEL}=1 {LABEL}.test=layer-reuse {stamp}\n"
    docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag=base, rm=True)
    try:
        a = _build(docker_client, make_notebook(["import yaml"], name="sib_a.ipynb"), base)
        nb_b = make_notebook(["import yaml, pygments\nprint(1)"], name="sib_b.ipynb")
        b = _build(docker_client, nb_b, base)
        base_layers = len(docker_client.api.inspect_image(base)["RootFS"]["Layers"])
        yield a, b, base_layers
    finally:
        own = docker_client.images.list(filters={"label": f"{LABEL}.test=layer-reuse"})
        for image in sorted(own, key=lambda i: -len(i.attrs["RootFS"]["Layers"])):  # children first
            for tag in image.tags:
                with contextlib.suppress(docker.errors.APIError):
                    docker_client.images.remove(tag, force=True)


def test_a_sibling_reuses_every_heavy_layer_it_shares_and_pushes_only_new_ones(
    docker_client: Any, siblings: Any
) -> None:
    (image_a, layers_a, heavy_a), (image_b, layers_b, heavy_b), base = siblings
    common = [p for p in heavy_a if p in heavy_b]
    assert len(common) >= 3, heavy_a  # pyyaml, pygments, jedi, debugpy, … at 600 KiB
    # B's order extends A's chain (pygments is imported by B: canonically it would come last)
    assert heavy_b[: len(common)] == common
    # under the heavy layers: user setup, the runner step's COPY and RUN; then one RUN each
    shared = _shared_prefix(layers_a, layers_b)
    assert shared >= base + 3 + len(common), (shared, base, common)
    pushed_a = push_image(image_a, REGISTRY, client=docker_client)
    pushed_b = push_image(image_b, REGISTRY, client=docker_client)
    assert len(pushed_b.pushed) + len(pushed_b.existing) == len(set(layers_b))
    reused = {layer.removeprefix("sha256:")[:12] for layer in layers_b[:shared]}
    assert not reused & set(pushed_b.pushed)  # nothing A wrote is uploaded again
    assert len(pushed_b.pushed) <= len(set(layers_b[shared:]))
    ensure_swarm(docker_client)
    worker = docker.DockerClient(base_url=WORKER_SOCKET, timeout=300)
    try:
        for ref in (pushed_a.reference, pushed_b.reference):  # pulled afresh, A then B
            if any(ref in t for i in worker.images.list() for t in i.tags):
                worker.images.remove(ref, force=True)
        statuses_a = _pull(worker, pushed_a.reference)
        statuses_b = _pull(worker, pushed_b.reference)
    finally:
        for ref in (pushed_b.reference, pushed_a.reference):
            with contextlib.suppress(docker.errors.APIError):
                worker.images.remove(ref, force=True)
        worker.close()
    assert statuses_b.count("Already exists") >= shared, (statuses_a, statuses_b)
    assert statuses_b.count("Pull complete") <= len(layers_b) - shared


def _pull(worker: Any, ref: str) -> list[str]:
    """The final status of each layer in a pull's progress stream."""
    repo, _, tag = ref.rpartition(":")
    final: dict[str, str] = {}
    for event in worker.api.pull(repo, tag=tag, stream=True, decode=True):
        if event.get("id") and event.get("status") in {"Already exists", "Pull complete"}:
            final[event["id"]] = event["status"]
    return list(final.values())
