"""The ``job`` kind as the real server sees it: registered from ``c.EnvPack.operation_kinds`` and its
options validated before anything runs (400 JSON, no traceback, nothing stored)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def envpack_config() -> dict[str, Any]:
    return {"operation_kinds": {"job": "jupyter_envpack.cluster.operation:job_kind"}}


@pytest.mark.parametrize(
    "options",
    [
        {"backend": "swarm", "schedule": "0 6 * * *"},
        {"schedule": "*/30 * * * * *", "backend": "kubernetes"},
        {"registry": "http://evil.example"},
        {"parameters": {"x=1\nimport os": 1}},
        {"memory": True},
        {"unknown": 1},
    ],
)
async def test_bad_job_options_are_400_and_nothing_runs(
    jp_fetch: Any, jp_root_dir: Path, options: dict[str, Any]
) -> None:
    (jp_root_dir / "nb.ipynb").write_text(
        json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []})
    )
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(
            "envpack",
            "operations",
            method="POST",
            body=json.dumps({"kind": "job", "path": "nb.ipynb", "options": options}),
        )
    assert info.value.code == 400
    body = json.loads(info.value.response.body)
    assert "Traceback" not in json.dumps(body)
    listed = json.loads((await jp_fetch("envpack", "operations")).body)
    items = listed["operations"] if isinstance(listed, dict) else listed
    assert items == []


async def test_the_job_kind_is_registered(jp_fetch: Any) -> None:
    status = json.loads((await jp_fetch("envpack", "status")).body)
    assert "job" in status["kinds"]
