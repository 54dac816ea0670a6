"""The ``%envpack`` magics and the sidebar's REST path build the SAME image for one notebook.

Both go through ``pipeline.prepare`` → ``pipeline.build`` with the notebook itself (no copy with
envpack's magics commented out: the in-image runner neutralises them), so the content-addressed
tag is one and the second surface finds the first one's image in the cache (issue 11.1).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from IPython.testing import globalipapp

pytest_plugins = ["pytest_jupyter.jupyter_server"]
pytestmark = pytest.mark.docker
TERMINAL = {"succeeded", "failed", "cancelled", "lost"}


def _notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "p", "language": "python"}
    sources = [
        ("%load_ext jupyter_envpack", None),
        ("n = 2", None),
        ("print(n * 21)\n_ = %envpack status --notebook same.ipynb", "42\n"),
    ]
    for i, (source, stdout) in enumerate(sources):
        cell = nbformat.v4.new_code_cell(source)
        if stdout is not None:
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stdout)]
        cell.execution_count = i + 1
        nb.cells.append(cell)
    nbformat.write(nb, path)


async def _operation(jp_fetch: Any, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    r = await jp_fetch("envpack", "operations", method="POST", body=json.dumps(body))
    op_id = json.loads(r.body)["id"]
    end = time.monotonic() + timeout
    while True:
        op = json.loads((await jp_fetch("envpack", "operations", op_id)).body)
        if op["state"] in TERMINAL:
            return op
        assert time.monotonic() < end, f"stuck in {op['state']}: {op['message']}"
        await asyncio.sleep(0.5)


@pytest.mark.timeout(900)
async def test_magics_and_sidebar_build_the_same_image(
    jp_fetch: Any,
    jp_root_dir: Path,
    test_base_image: str,
    docker_client: Any,
    op_cleanup: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a notebook that uses the magics, with the outputs its user saw
    nb = jp_root_dir / "same.ipynb"
    _notebook(nb)
    monkeypatch.setenv("ENVPACK_MAGICS_DISPLAY", "text")
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    shell = globalipapp.get_ipython()
    shell.run_line_magic("load_ext", "jupyter_envpack")
    # When the magics build it (in-process probe of this kernel) …
    view = await asyncio.to_thread(
        shell.run_line_magic, "envpack", f"build --notebook {nb} --base-image {test_base_image}"
    )
    image = view.data.image
    # … and the sidebar's REST path builds it too
    options = {"base_image": test_base_image}
    built = await _operation(
        jp_fetch, {"kind": "build", "path": "same.ipynb", "options": options}, 600
    )
    op_cleanup.append(built["id"])
    # Then both name one image, and the second build found the first one's in the cache
    assert built["state"] == "succeeded", built["error"]
    assert built["result"]["image"] == image and built["result"]["cached"] is True
    assert docker_client.images.get(image).labels["org.jupyter.envpack"] == "1"
    # and the image reruns the notebook: envpack's magics are skipped inside it, the rest is same
    run = await _operation(
        jp_fetch, {"kind": "run", "path": "same.ipynb", "options": {"image": image}}, 600
    )
    op_cleanup.append(run["id"])
    assert run["state"] == "succeeded", run["error"]
    statuses = [c["status"] for c in run["result"]["report"]["cells"]]
    assert statuses[1:] == ["same", "same"] and run["result"]["report"]["verdict"] == "reproduced"
