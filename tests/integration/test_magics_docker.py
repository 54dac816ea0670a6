"""``%envpack build`` / ``run`` against the real Docker engine, in IPython and headless (nbclient)."""

from __future__ import annotations

import json
import os
import time

import nbformat
import pytest
from IPython.testing import globalipapp

from jupyter_envpack.errors import EngineError

pytestmark = pytest.mark.docker
TEST_REGISTRY = os.environ.get("ENVPACK_TEST_REGISTRY", "127.0.0.1:5000")

CELLS = [
    ("n = 2", []),
    ("print(n * 21)", [{"output_type": "stream", "name": "stdout", "text": "42\n"}]),
]


@pytest.fixture
def ip(monkeypatch):
    shell = globalipapp.get_ipython()
    shell.run_line_magic("load_ext", "jupyter_envpack")
    monkeypatch.setenv("ENVPACK_MAGICS_DISPLAY", "text")
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    return shell


@pytest.fixture
def built_images(docker_client):
    """Image references a test built; removed afterwards (only those, never by name pattern)."""
    refs: list[str] = []
    yield refs
    for ref in refs:
        for _attempt in range(5):  # a removed swarm task's container goes away a bit later
            try:
                image = docker_client.images.get(ref)
                assert image.labels.get("org.jupyter.envpack") == "1"
                docker_client.images.remove(ref, noprune=False)
                break
            except Exception:  # in use (by a parallel test, or a dying container)
                time.sleep(2)


def parameterised(make_notebook, name):
    path = make_notebook(CELLS, name=name)
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nb, path)
    return path


def test_build_is_cached_then_run_reproduces_and_parameters_change_outputs(
    ip, make_notebook, test_base_image, built_images, capsys
):
    nb = parameterised(make_notebook, "magic_build.ipynb")
    opts = f"--notebook {nb} --base-image {test_base_image}"

    first = ip.run_line_magic("envpack", f"build {opts}")
    built_images.append(first.data.image)
    second = ip.run_line_magic("envpack", f"build {opts}")
    assert second.data.image == first.data.image and second.data.cached
    assert second.headline == "image found in the cache"

    same = ip.run_line_magic("envpack", f"run {opts}")
    assert same.headline == "reproduced" and same.data.report.reproduced
    changed = ip.run_line_magic("envpack", f"run {opts} -p n 3 --output {nb.parent}/p.ipynb")
    assert changed.headline == "did not reproduce"
    assert "63" in changed.fields["details"] and "42" in changed.fields["details"]
    executed = nbformat.read(nb.parent / "p.ipynb", as_version=4)
    assert any("63" in o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    printed = capsys.readouterr().out
    assert "▸ build: building" in printed and "cached" in printed and "▸ run: starting" in printed


def test_unreachable_engine_is_a_short_error(ip, make_notebook, monkeypatch):
    nb = make_notebook(["1"], name="no_engine.ipynb")
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    with pytest.raises(EngineError) as err:
        ip.run_line_magic("envpack", f"build --notebook {nb}")
    assert err.value._render_traceback_()[1].startswith("hint: start Docker")


def test_notebook_using_the_magics_runs_headless_with_nbclient(
    make_notebook, test_base_image, built_images, tmp_path
):
    # Given a notebook whose own cells call the magics on itself (no widget frontend)
    from nbclient import NotebookClient

    magic = f"%envpack {{}} --notebook headless.ipynb --base-image {test_base_image}"
    path = make_notebook(
        [
            "n = 2",
            "print(n * 21)",
            "%load_ext jupyter_envpack",
            "%envpack snapshot --notebook headless.ipynb",
            magic.format("dockerfile"),
            "_ = " + magic.format("build") + "\nprint(_)",
            magic.format("run -p n 5"),
            "%envpack binder --notebook headless.ipynb",
        ],
        name="headless.ipynb",
    )
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].metadata["tags"] = ["parameters"]

    # When nbclient executes it
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()

    # Then every magic cell produced text output, no widget, no error
    outputs = [c.outputs for c in nb.cells]
    assert not [o for cell in outputs for o in cell if o.output_type == "error"]
    mimes = {m for cell in outputs for o in cell for m in o.get("data", {})}
    assert "application/vnd.jupyter.widget-view+json" not in mimes

    def text(i):
        return "".join(
            o.get("text", "") or o.get("data", {}).get("text/plain", "") for o in outputs[i]
        )

    assert "headless.ipynb — Python 3." in text(3)
    assert f"FROM {test_base_image}" in text(4)
    image = next(
        line.split(": ", 1)[1] for line in text(5).splitlines() if line.startswith("image: ")
    )
    built_images.append(image)
    # (the saved file has no outputs: every cell is "skipped", so the verdict says there was
    # nothing to compare — never a green "reproduced"; the magic cells are not rerun)
    lines = text(6).splitlines()
    assert "▸ run: starting" in text(6) and "reproduced" not in lines
    assert "nothing to compare (no code cell had been executed)" in lines
    assert "the notebook is not in a git repository" in text(7)
    html = "".join(json.dumps(o.get("data", {})) for o in outputs[3])
    assert "<table>" in html


def test_widget_progress_in_a_real_kernel(make_notebook, test_base_image, built_images, tmp_path):
    # Given a build cell that asks for widgets in a real kernel (nbclient records widget state)
    from nbclient import NotebookClient

    path = make_notebook(
        [
            "%load_ext jupyter_envpack",
            f"%envpack build --widgets --notebook widgets.ipynb --base-image {test_base_image}",
        ],
        name="widgets.ipynb",
    )
    nb = nbformat.read(path, as_version=4)

    # When it runs
    NotebookClient(
        nb,
        timeout=900,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()

    # Then the cell shows a widget whose final state is a full, green bar and a filled log
    outputs = nb.cells[1].outputs
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    models = [m["state"] for m in state.values()]
    bars = [m for m in models if m.get("_model_name") == "FloatProgressModel"]
    assert [(b["value"], b["bar_style"]) for b in bars] == [(1.0, "success")]
    logs = [m["value"] for m in models if m.get("_model_name") == "TextareaModel"]
    assert logs and "[build]" in logs[0]
    result = next(o for o in outputs if o.output_type == "execute_result")
    image = next(
        line.split(": ", 1)[1]
        for line in result.data["text/plain"].splitlines()
        if line.startswith("image: ")
    )
    built_images.append(image)


@pytest.mark.swarm
@pytest.mark.registry
def test_submit_runs_the_notebook_as_a_swarm_job_and_jobs_lists_it(
    ip, make_notebook, test_base_image, built_images, docker_client, tmp_path, monkeypatch
):
    # The swarm may have several nodes: the job pulls its image from the test registry.
    if docker_client.info().get("Swarm", {}).get("ControlAvailable") is not True:
        pytest.fail("this engine is not a swarm manager (CI runs .ci/swarm-up)")
    monkeypatch.setenv("ENVPACK_JOBS_DB", str(tmp_path / "jobs.sqlite"))
    nb = parameterised(make_notebook, "magic_job.ipynb")
    try:
        job = ip.run_line_magic(
            "envpack",
            f"submit --notebook {nb} --backend swarm --wait "
            f"-p n 4 --base-image {test_base_image} "
            f"--registry {TEST_REGISTRY}",
        )
        pushed = job.data.record.image
        assert pushed.startswith(f"{TEST_REGISTRY}/envpack/magic-job:")
        built_images.extend([pushed, pushed.removeprefix(f"{TEST_REGISTRY}/")])
        assert job.fields["state"].startswith("succeeded")
        executed = nbformat.read(job.data.output_path, as_version=4)
        assert any("84" in o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
        jobs = ip.run_line_magic("envpack", "jobs")
        assert [row[:3] for row in jobs.rows] == [[job.data.record.id, "swarm", "succeeded"]]
    finally:
        for (job_id,) in _job_ids(tmp_path):
            selector = {"label": f"org.jupyter.envpack.job={job_id}"}
            for service in docker_client.services.list(filters=selector):
                service.remove()
            for container in docker_client.containers.list(all=True, filters=selector):
                container.remove(force=True)  # swarm may keep a finished task's container


def _job_ids(tmp_path):
    import sqlite3

    with sqlite3.connect(tmp_path / "jobs.sqlite") as db:
        return db.execute("SELECT id FROM jobs").fetchall()


def test_a_notebook_using_the_magics_reproduces_in_its_container(
    ip, make_notebook, test_base_image, built_images, tmp_path
):
    # Given a notebook that uses the magics, executed and saved with its outputs
    from nbclient import NotebookClient

    path = make_notebook(
        [
            "%load_ext jupyter_envpack",
            "print(6 * 7)",
            "%envpack dockerfile --notebook selfref.ipynb",
        ],
        name="selfref.ipynb",
    )
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    nbformat.write(nb, path)

    # When it is rerun in its image from the magics
    result = ip.run_line_magic("envpack", f"run --notebook {path} --base-image {test_base_image}")
    built_images.append(result.data.report.image)

    # Then the control cells are not rerun inside the container (the in-image runner skips them),
    # and the rest reproduces
    assert result.headline == "reproduced", result.fields
    assert result.data.output_path == path.with_name("selfref.envpack.ipynb")
    executed = nbformat.read(result.data.output_path, as_version=4)
    assert executed.cells[0].source == "pass  # skipped by envpack: %load_ext jupyter_envpack"
    assert executed.cells[1].outputs[0]["text"] == "42\n"
