"""REST: ``reconstruct`` (+ ``as_of``) on a run body and the snapshot route (issue 13.2), for real:
real index, real uv, a fresh venv (no Docker, as on JupyterHub)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["pytest_jupyter.jupyter_server"]


async def test_a_reconstructed_rerun_through_the_api_says_so(
    jp_fetch: Any,
    notebook: Path,
    wait_op: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    monkeypatch.setenv("ENVPACK_VENV_CACHE", str(tmp_path / "venvs"))
    r = await jp_fetch(
        "envpack",
        "snapshot",
        params={"path": "nb.ipynb", "reconstruct": "1", "as_of": "2024-03-01"},
    )
    snap = json.loads(r.body)
    assert snap["origin"] == "reconstructed" and snap["warnings"][0]["code"] == "reconstructed"
    rec = snap["reconstruction"]
    assert rec["as_of"] == "2024-03-01" and rec["as_of_source"] == "option"
    assert rec["date_moved"] is False and "ipykernel" in rec["pins"]
    options = {"engine": "venv", "reconstruct": True, "as_of": "2024-03-01"}
    body = {"kind": "run", "path": "nb.ipynb", "options": options}
    r = await jp_fetch("envpack", "operations", method="POST", body=json.dumps(body))
    op = json.loads(r.body)
    done = await wait_op(op["id"], {"succeeded", "failed"}, timeout=600)
    assert done["state"] == "succeeded", done
    report = done["result"]["report"]
    assert report["origin"] == "reconstructed" and report["as_of"] == "2024-03-01"
    assert report["engine"] == "venv" and report["run_status"] == "completed"
