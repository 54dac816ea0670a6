"""``pytest --envpack`` for real: builds on the engine, reruns in containers, reads the reports.

The corpus notebooks are located with ``ENVPACK_TEST_CORPUS`` or ``<repo>/../shared/corpus``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import nbformat
import pytest
from shared_corpus import corpus_notebook

pytestmark = pytest.mark.docker
pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
MARKER_CELLS = [
    "import yaml\nprint(yaml.safe_dump({'a': [1, 2]}))",
    "# NBVAL_IGNORE_OUTPUT\nimport random\nrandom.random()",
    "# NBVAL_RAISES_EXCEPTION\n1 / 0",
    "# NBVAL_SKIP\nprint('this cell must not run')",
    "import time\nprint('at', time.time_ns())",
    "21 * 2",
]


def plugin_args() -> list[str]:
    installed = any(ep.name == "envpack" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "jupyter_envpack.pytest_plugin"]


def executed(path: Path) -> Any:
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, kernel_name="python3", allow_errors=True, timeout=120).execute()
    return nb


def envpack_args(labels: dict[str, str], out: Path, *extra: str) -> list[str]:
    (key, value) = next(iter(labels.items()))
    return [
        *plugin_args(),
        "-p",
        "no:cacheprovider",
        "--envpack",
        f"--envpack-label={key}={value}",
        f"--envpack-output-dir={out}",
        *extra,
    ]


def test_markers_sanitizers_and_lax_mode_in_the_image(
    pytester: pytest.Pytester, make_notebook, test_base_image, test_labels, own_containers
) -> None:
    path = make_notebook(MARKER_CELLS, name="markers.ipynb", folder=pytester.path)
    nbformat.write(executed(path), path)
    out = pytester.path.parent / "out"
    common = envpack_args(
        test_labels,
        out,
        f"--envpack-python={sys.executable}",
        f"--envpack-base-image={test_base_image}",
    )
    junit = pytester.path.parent / "junit.xml"
    result = pytester.runpytest(*common, f"--junitxml={junit}", "markers.ipynb")
    result.assert_outcomes(passed=4, failed=1, skipped=1)
    text = result.stdout.str()
    assert "markers.ipynb, cell 4: the cell's output differs" in text
    assert "-[stdout] at " in text and "+[stdout] at " in text
    cases = ET.parse(junit).getroot().iter("testcase")  # noqa: S314 - pytest wrote it
    verdicts = {c.get("name"): [e.tag for e in c] for c in cases}
    assert verdicts["cell-4"] == ["failure"] and verdicts["cell-3"] == ["skipped"]
    assert len(verdicts) == 6
    ran = nbformat.read(next(out.glob("*/markers.envpack.ipynb")), as_version=4)
    assert ran.cells[3].outputs == []  # NBVAL_SKIP: never executed in the container
    assert ran.cells[5].outputs[0]["data"]["text/plain"] == "42"
    assert ran.cells[2].outputs[0]["ename"] == "ZeroDivisionError"

    sanitizer = pytester.path.parent / "time.cfg"
    sanitizer.write_text("[time]\nregex: at \\d+\nreplace: at NOW\n")
    again = pytester.runpytest(*common, f"--envpack-sanitize-with={sanitizer}", "markers.ipynb")
    again.assert_outcomes(passed=5, skipped=1)
    pytester.runpytest(*common, "--envpack-lax", "markers.ipynb").assert_outcomes(
        passed=5, skipped=1
    )
    assert own_containers() == []


def _native_reference(source: Path, target: Path) -> int:
    """Execute natively twice; tag the cells that differ between the runs nbval-ignore-output
    and those that raise on purpose (tuples are immutable…) raises-exception, as nbval needs."""
    from jupyter_envpack.execute.compare import compare_notebooks

    shutil.copyfile(source, target)
    first, second = executed(target), executed(target)
    report = compare_notebooks(first, second)
    unstable = {c.index for c in report.cells if c.status not in {"same", "skipped", "error"}}
    for index in unstable:
        first.cells[index].metadata.setdefault("tags", []).append("nbval-ignore-output")
    for cell in first.cells:
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            cell.metadata.setdefault("tags", []).append("raises-exception")
    nbformat.write(first, target)
    return sum(1 for c in first.cells if c.cell_type == "code")


@pytest.mark.slow
def test_corpus_notebooks_reproduce_and_a_second_run_reuses_everything(
    pytester: pytest.Pytester, test_base_image, test_labels, own_containers
) -> None:
    names = ("10-Iterators.ipynb", "06-Built-in-Data-Structures.ipynb")
    cells = sum(_native_reference(corpus_notebook(n), pytester.path / n) for n in names)
    out = pytester.path.parent / "out"
    args = envpack_args(
        test_labels,
        out,
        f"--envpack-python={sys.executable}",
        f"--envpack-base-image={test_base_image}",
    )
    pytester.runpytest(*args).assert_outcomes(passed=cells)
    started = time.monotonic()
    second = pytester.runpytest(*args)
    warm = time.monotonic() - started
    second.assert_outcomes(passed=cells)
    print(f"second run, warm caches: {warm:.1f} s for {len(names)} notebooks, {cells} cells")
    assert own_containers() == []


def test_the_lock_file_drives_the_ci_run_and_drift_is_reported(
    pytester: pytest.Pytester, make_notebook, test_base_image, test_labels, monkeypatch
) -> None:
    path = make_notebook(
        ["import yaml\nprint(yaml.safe_dump([1]))", "print('ok')"],
        name="locked.ipynb",
        folder=pytester.path,
    )
    nbformat.write(executed(path), path)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ENVPACK_BASE_IMAGE": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "jupyter_envpack.cli", "lock", str(path), "--python", sys.executable,
         "--base-image", test_base_image, "-q"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lock_text = path.with_name("locked.envpack.lock").read_text()
    pins = [ln for ln in lock_text.splitlines() if ln[:1].isalnum()]
    assert pins and all(" --hash=sha256:" in ln for ln in pins)
    assert f"# base-image: {test_base_image}\n# base-image-id: sha256:" in lock_text
    # No --envpack-python and no base image: the pins and the base image come from the lock
    # (python:X.Y-slim cannot be pulled here, so a run that ignored the lock would fail).
    monkeypatch.delenv("ENVPACK_BASE_IMAGE", raising=False)
    out = pytester.path.parent / "out"
    result = pytester.runpytest(*envpack_args(test_labels, out), "locked.ipynb")
    result.assert_outcomes(passed=2)
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source = "print('- 1')"  # yaml is no longer imported; same output
    nbformat.write(nb, path)
    drifted = pytester.runpytest(*envpack_args(test_labels, out), "locked.ipynb")
    drifted.assert_outcomes(passed=2)
    assert "lock-drift: the lock file pins yaml for an import the notebook dropped" in (
        drifted.stdout.str()
    )


def test_a_build_failure_fails_every_cell_once_in_full(
    pytester: pytest.Pytester, make_notebook, docker_client, test_labels
) -> None:
    path = make_notebook(["print(1)", "print(2)"], name="nobase.ipynb", folder=pytester.path)
    nbformat.write(executed(path), path)
    args = envpack_args(
        test_labels,
        pytester.path.parent / "out",
        f"--envpack-python={sys.executable}",
        "--envpack-base-image=127.0.0.1:9/envpack-test/missing:1",
    )
    result = pytester.runpytest(*args, "nobase.ipynb")
    result.assert_outcomes(failed=2)
    text = result.stdout.str()
    assert "nobase.ipynb, cell 0: BuildError:" in text and "missing:1" in text
    assert "nobase.ipynb, cell 1: the notebook did not run (see cell-0)" in text
