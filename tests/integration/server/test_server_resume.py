"""The ``resume`` half of the build/run kinds against the real engine: what a restarted server
finds by label decides the state (RELIABILITY J1, F12)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from jupyter_envpack.config import EnvPack
from jupyter_envpack.events import CancelToken, null_reporter
from jupyter_envpack.operations import (
    OPERATION_LABEL,
    LostError,
    Operation,
    OperationContext,
    OperationManager,
    OperationStore,
    new_operation_id,
)
from jupyter_envpack.server.kinds import resume_build, resume_run
from jupyter_envpack.server.paths import ContentsPaths

pytestmark = pytest.mark.docker


def context(tmp_path: Path, kind: str) -> OperationContext:
    store = OperationStore(tmp_path / "ops.sqlite")
    manager = OperationManager(store, EnvPack(), ContentsPaths(tmp_path))
    op = store.create(Operation(id=new_operation_id(), kind=kind, path="nb.ipynb", state="running"))
    return OperationContext(manager, op, resumed=True)


@pytest.mark.reliability("J1")
def test_a_build_resumes_from_its_labelled_image_or_is_lost(
    tmp_path: Path, docker_client: Any, test_base_image: str
) -> None:
    op = context(tmp_path, "build")
    with pytest.raises(LostError):
        resume_build(op, null_reporter, CancelToken())
    tag = f"envpack-test/server-resume:{op.id[:12]}"
    dockerfile = io.BytesIO(f"FROM {test_base_image}\n".encode())
    docker_client.images.build(
        fileobj=dockerfile,
        tag=tag,
        rm=True,
        labels={**op.labels, "org.jupyter.envpack": "1", "org.jupyter.envpack.kind": "build"},
    )
    try:
        result = resume_build(op, null_reporter, CancelToken())
        assert result["image"] == tag and result["resumed"] is True
    finally:
        docker_client.images.remove(tag)


@pytest.mark.reliability("J1", "F12")
def test_a_run_without_its_container_is_lost_and_foreign_ones_are_untouched(
    tmp_path: Path, docker_client: Any, test_base_image: str
) -> None:
    op = context(tmp_path, "run")
    foreign = docker_client.containers.create(
        test_base_image,
        command=["true"],
        labels={
            "org.jupyter.envpack": "1",
            "org.jupyter.envpack.test": "foreign",
            OPERATION_LABEL: new_operation_id(),
        },
    )
    try:
        with pytest.raises(LostError):
            resume_run(op, null_reporter, CancelToken())
        foreign.reload()
        assert foreign.status == "created"
    finally:
        foreign.remove(force=True)
