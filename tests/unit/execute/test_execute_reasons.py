"""A differing cell's source and guessed reason in the report (issue 12.7), on real kernel outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from jupyter_envpack.cli import _print_report
from jupyter_envpack.execute.compare import compare_notebooks
from jupyter_envpack.execute.reasons import guess_reason

# Each cell differs between two real runs for one cause; FLAG exists only in the second run.
CELLS = {
    "unseeded-random": "import random\nprint(random.random())",
    "time-or-date": "import datetime\nprint(datetime.datetime.now().microsecond)",
    "ordering": "print(sorted({str(i) for i in range(30)}) and {str(i) for i in range(30)})",
    "file-read": "print(open('data.txt').read())",
    "warning-text": (
        "import os, warnings\nwarnings.simplefilter('always')\n"
        "if os.path.exists('FLAG'):\n    warnings.warn('f() is deprecated', DeprecationWarning)\n"
        "print('done')"
    ),
    "float-last-digits": "import os\nprint(0.1 + 0.2 if os.path.exists('FLAG') else 0.3)",
}


def _execute(cells: list[str], folder: Path) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    NotebookClient(nb, timeout=60, resources={"metadata": {"path": str(folder)}}).execute()
    return nb


@pytest.fixture(scope="module")
def report_json(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("reasons")
    (folder / "data.txt").write_text("first version\n")
    original = _execute(list(CELLS.values()), folder)
    (folder / "data.txt").write_text("second version\n")
    (folder / "FLAG").write_text("")
    rerun = _execute(list(CELLS.values()), folder)
    for before, after in zip(original.cells, rerun.cells, strict=True):
        after.id = before.id
    return compare_notebooks(original, rerun).to_json()


@pytest.mark.parametrize("index", range(len(CELLS)))
def test_real_differences_get_their_reason_and_source(report_json: dict, index: int) -> None:
    expected, source = list(CELLS.items())[index]
    cell = report_json["cells"][index]
    assert cell["status"] == "differs", cell
    assert cell["source"] == source
    assert cell["reason"]["code"] == expected, cell
    assert cell["reason"]["text"]


def test_the_cli_prints_the_reason(report_json: dict, capsys: pytest.CaptureFixture[str]) -> None:
    from jupyter_envpack.execute.compare import CellResult, Report

    cells = [CellResult(**c) for c in report_json["cells"]]
    _print_report(Report(cells=cells, output_path="out.ipynb"))
    out = capsys.readouterr().out
    assert out.count("likely reason:") == len(CELLS)
    assert "without a seed" in out


def test_a_same_cell_has_no_source_or_reason(tmp_path: Path) -> None:
    nb = _execute(["print(1)"], tmp_path)
    cell = compare_notebooks(nb, nb).to_json()["cells"][0]
    assert cell == {"index": 0, "status": "same"}


@pytest.mark.parametrize(
    ("source", "original", "rerun", "code"),
    [
        ("x", "<Model at 0x7f3a>", "<Model at 0x9b21>", "memory-address"),
        ("random.seed(1)\nprint(random.random())", "0.1", "0.2", None),
        ("print(total)", "3", "4", None),
    ],
)
def test_rules_on_recorded_outputs(
    source: str, original: str, rerun: str, code: str | None
) -> None:
    reason = guess_reason(source, original, rerun)
    assert (reason.code if reason else None) == code
