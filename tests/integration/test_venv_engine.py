"""Rerunning without any container engine: a fresh uv venv of the lock (issue 13.1).

Real uv, real wheels from the host wheel cache, a real kernel; the CLI runs with ``DOCKER_HOST``
pointing at a dead socket, as a JupyterHub user without Docker would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from shared_corpus import corpus_notebook

from jupyter_envpack.errors import RunError
from jupyter_envpack.execute import RunOptions
from jupyter_envpack.execute.venv import find_python, run_notebook_venv
from jupyter_envpack.snapshot import take_snapshot

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[2]


def executed_locally(make_notebook: Any, cells: list[str], name: str = "nb.ipynb") -> Path:
    """A notebook whose stored outputs come from running it here (like a user's notebook)."""
    from nbclient import NotebookClient

    path = make_notebook(cells, name=name)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, kernel_name="python3", allow_errors=True).execute()
    nbformat.write(nb, path)
    return path


def run_cli(nb: Path, cache: Path, *extra: str) -> tuple[dict[str, Any], str]:
    """``jupyter envpack run NB --engine venv --json`` with no reachable Docker engine."""
    env = {
        **os.environ,
        "DOCKER_HOST": "unix:///nonexistent.sock",
        "ENVPACK_VENV_CACHE": str(cache),
        "PYTHONPATH": str(REPO),
    }
    argv = [sys.executable, "-m", "jupyter_envpack.cli", "run", str(nb), "--engine", "venv"]
    proc = subprocess.run(
        [*argv, "--json", *extra], capture_output=True, text=True, env=env, timeout=900
    )
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    return json.loads(proc.stdout), proc.stderr


def test_synthetic_notebook_reproduces_without_docker_and_reuses_the_venv(
    make_notebook: Any, tmp_path: Path
) -> None:
    path = executed_locally(
        make_notebook,
        ["import packaging.version\nprint(packaging.version.Version('1.2'))", "print(6 * 7)"],
    )
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)"))
    nbformat.write(nb, path)
    cache = tmp_path / "venvs"
    report, _ = run_cli(path, cache)
    assert report["schema"] == "envpack.report/1" and report["engine"] == "venv"
    assert [c["status"] for c in report["cells"][:2]] == ["same", "same"]
    assert report["run_status"] == "completed"
    key = report["image"].removeprefix("venv:")
    executed = nbformat.read(report["output_path"], as_version=4)
    assert executed.cells[2].outputs[0]["text"].strip() == str(cache / key)  # ran in the venv
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    marker = (cache / key / ".envpack-complete").stat().st_ino
    again, err2 = run_cli(path, cache)
    assert "reusing the environment" in err2 and "creating a fresh environment" not in err2
    assert again["image"] == report["image"]
    assert (cache / key / ".envpack-complete").stat().st_ino == marker


def test_shared_corpus_notebook_reproduces_without_docker(tmp_path: Path) -> None:
    source = corpus_notebook("06-Built-in-Data-Structures.ipynb")
    nb = tmp_path / source.name
    shutil.copyfile(source, nb)
    report, _ = run_cli(nb, tmp_path / "venvs")
    assert report["engine"] == "venv" and report["run_status"] == "completed"
    summary = report["summary"]
    # Stored errors come back as errors; only one cell differs: a dict printed by Python < 3.7
    assert summary.get("same", 0) >= 30 and summary.get("error") == 2
    assert summary.get("new-error", 0) == 0 and summary.get("not-run", 0) == 0


@pytest.mark.reliability("L4")
def test_memory_limit_reaches_the_venv_kernel(
    make_notebook: Any, tmp_path: Path, kernel_python: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVPACK_VENV_CACHE", str(tmp_path / "venvs"))
    path = make_notebook(["x = bytearray(4 * 2**30)", "print('after')"])
    spec = take_snapshot(path, python=kernel_python)
    opts = RunOptions(mem_limit="768m", allow_errors=True)
    result = run_notebook_venv(spec, path, opts)
    executed = nbformat.read(result.output_path, as_version=4)
    assert executed.cells[0].outputs[0]["ename"] == "MemoryError"
    assert executed.cells[1].outputs[0]["text"] == "after\n"  # the kernel survived
    assert result.report.engine == "venv"


def test_deadline_kills_the_runner_and_its_kernel(
    make_notebook: Any, tmp_path: Path, kernel_python: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVPACK_VENV_CACHE", str(tmp_path / "venvs"))
    path = make_notebook(["import time\ntime.sleep(600)"])
    spec = take_snapshot(path, python=kernel_python)
    with pytest.raises(RunError) as info:
        run_notebook_venv(spec, path, RunOptions(deadline=20))
    assert info.value.reason == "timeout"
    for _ in range(20):  # the kernel polls its parent (the runner) once a second
        ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        if str(tmp_path / "venvs") not in ps:
            break
        time.sleep(0.5)
    assert str(tmp_path / "venvs") not in ps  # no kernel left behind


def test_missing_python_says_how_to_get_one() -> None:
    with pytest.raises(RunError) as info:
        find_python("2.9")
    assert info.value.reason == "no-python"
    assert "uv python install 2.9" in (info.value.hint or "")


@pytest.mark.reliability("L3")
def test_the_lock_files_hashes_guard_the_venv(
    make_notebook: Any, tmp_path: Path, kernel_python: str
) -> None:
    path = executed_locally(make_notebook, ["import yaml\nprint(yaml.safe_dump([1]))"])
    env = {**os.environ, "PYTHONPATH": str(REPO), "DOCKER_HOST": "unix:///nonexistent.sock"}
    lock_argv = [sys.executable, "-m", "jupyter_envpack.cli", "lock", str(path), "-q"]
    proc = subprocess.run(
        [*lock_argv, "--python", kernel_python], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lock = path.with_name("nb.envpack.lock")
    report, _ = run_cli(path, tmp_path / "good")
    assert report["cells"][0]["status"] == "same"
    text = lock.read_text()
    line = next(ln for ln in text.splitlines() if ln.lower().startswith("pyyaml=="))
    bad = re.sub(r"--hash=sha256:[0-9a-f]{64}", "--hash=sha256:" + "0" * 64, line)
    lock.write_text(text.replace(line, bad))
    env["ENVPACK_VENV_CACHE"] = str(tmp_path / "bad")
    argv = [sys.executable, "-m", "jupyter_envpack.cli", "run", str(path), "--engine", "venv"]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "hash" in proc.stderr.lower() and "pyyaml" in proc.stderr.lower()
    assert not any((tmp_path / "bad").glob("*/.envpack-complete"))  # nothing half-built is kept


def test_the_pytest_plugin_reruns_in_a_venv_without_docker(
    pytester: pytest.Pytester, make_notebook: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pytest --envpack --envpack-engine venv`` on a CI runner without a container engine: the
    notebook's data file reaches the venv run although the plugin runs a prepared copy."""
    from importlib.metadata import entry_points

    from nbclient import NotebookClient

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent.sock")
    monkeypatch.setenv("ENVPACK_VENV_CACHE", str(tmp_path / "venvs"))
    (pytester.path / "inputs").mkdir()
    (pytester.path / "inputs" / "table.txt").write_text("7\n")
    cells = [
        "import os\nprint(open(os.path.join('inputs', 'table.txt')).read().strip())",
        "# NBVAL_SKIP\nprint('never')",
        "6 * 7",
    ]
    path = make_notebook(cells, name="data.ipynb", folder=pytester.path)
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    nbformat.write(nb, path)
    out = tmp_path / "out"
    installed = any(ep.name == "envpack" for ep in entry_points(group="pytest11"))
    result = pytester.runpytest(
        *([] if installed else ["-p", "jupyter_envpack.pytest_plugin"]),
        "-p",
        "no:cacheprovider",
        "--envpack",
        "--envpack-engine=venv",
        f"--envpack-python={sys.executable}",
        f"--envpack-output-dir={out}",
        "data.ipynb",
    )
    result.assert_outcomes(passed=2, skipped=1)
    ran = nbformat.read(next(out.glob("*/data.envpack.ipynb")), as_version=4)
    assert ran.cells[0].outputs[0]["text"].strip() == "7"
    assert ran.cells[1].outputs == []  # NBVAL_SKIP: never executed
