"""The magics in a real ipykernel run headless by nbclient: session discovery and cell errors."""

from __future__ import annotations

import os

import nbformat
from nbclient import NotebookClient


def test_session_notebook_and_short_errors_in_a_real_kernel(make_notebook, tmp_path):
    # Given a notebook that loads the extension, snapshots itself and then makes two mistakes
    path = make_notebook(
        [
            "import json",
            "%load_ext jupyter_envpack",
            "%envpack snapshot",
            "%envpack frobnicate",
            "%envpack snapshot --notebook missing.ipynb",
        ],
        name="session.ipynb",
    )
    nb = nbformat.read(path, as_version=4)

    # When a kernel started the way Jupyter Server starts it (JPY_SESSION_NAME) runs it headless
    env = {**os.environ, "JPY_SESSION_NAME": str(path), "ENVPACK_MAGICS_DISPLAY": "text"}
    NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute(env=env)
    out = [c.outputs for c in nb.cells]

    # Then the snapshot found the notebook through the session, with no --notebook
    text = out[2][0]["data"]["text/plain"]
    assert text.startswith(f"{path} — Python 3.") and "pinned packages" in text
    assert "<table>" in out[2][0]["data"]["text/html"]
    # and the mistakes are short errors: a UsageError line, and message + hint, no traceback
    usage = "".join(o.get("text", "") for o in out[3])
    assert "UsageError: unknown verb 'frobnicate'" in usage
    [error] = [o for o in out[4] if o.output_type == "error"]
    assert error.ename == "NotFoundError"
    assert len(error.traceback) == 2 and error.traceback[1].startswith("hint: ")
    assert "missing.ipynb" in error.traceback[0] and "File " not in "".join(error.traceback)
