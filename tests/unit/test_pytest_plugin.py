"""The pytest plugin without an engine: off by default, collection, nbval markers, sanitizers.

Runs that need the engine are in tests/integration/test_pytest_plugin_docker.py.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points
from pathlib import Path

import nbformat
import pytest

from jupyter_envpack.cellcheck import (
    CellOptions,
    cell_options,
    compare_sanitized,
    read_sanitize_file,
    stored_error,
    verdict,
)
from jupyter_envpack.errors import InputError
from jupyter_envpack.execute.compare import CellResult

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[2]


def plugin_args() -> list[str]:
    """``-p jupyter_envpack.pytest_plugin`` unless the installed entry point already loads it."""
    installed = any(ep.name == "envpack" for ep in entry_points(group="pytest11"))
    return [] if installed else ["-p", "jupyter_envpack.pytest_plugin"]


def write_nb(path: Path, cells: list[tuple[str, str]], tags: dict[int, list[str]] | None = None):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "p", "language": "python"}
    for kind, source in cells:
        make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
        nb.cells.append(make(source))
    for index, cell_tags in (tags or {}).items():
        nb.cells[index].metadata["tags"] = cell_tags
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_the_entry_point_is_declared_and_the_module_is_a_plugin() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    assert '[project.entry-points.pytest11]\nenvpack = "jupyter_envpack.pytest_plugin"' in text
    import jupyter_envpack.pytest_plugin as plugin

    assert callable(plugin.pytest_addoption) and callable(plugin.pytest_collect_file)


def test_without_the_flag_notebooks_are_not_collected(pytester: pytest.Pytester) -> None:
    write_nb(pytester.path / "a.ipynb", [("code", "1/0")])
    pytester.makepyfile(test_plain="def test_ok():\n    assert True\n")
    result = pytester.runpytest(*plugin_args(), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "ipynb" not in result.stdout.str()


@pytest.mark.reliability("B4")
def test_one_item_per_code_cell_named_by_its_index(pytester: pytest.Pytester) -> None:
    write_nb(
        pytester.path / "nbs" / "a.ipynb",
        [("code", "x = 1"), ("markdown", "# t"), ("code", "x"), ("code", "# NBVAL_SKIP\nx")],
    )
    write_nb(pytester.path / "nbs" / "a.envpack.ipynb", [("code", "x")])  # our own output
    write_nb(pytester.path / "nbs" / ".ipynb_checkpoints" / "a-checkpoint.ipynb", [("code", "")])
    result = pytester.runpytest(*plugin_args(), "--envpack", "--collect-only", "-q", "nbs")
    ids = [ln for ln in result.stdout.lines if "::" in ln]
    assert ids == ["nbs/a.ipynb::cell-0", "nbs/a.ipynb::cell-2", "nbs/a.ipynb::cell-3"]


def test_skipped_cells_are_reported_skipped_without_running_anything(
    pytester: pytest.Pytester,
) -> None:
    write_nb(
        pytester.path / "a.ipynb",
        [("code", "# NBVAL_SKIP\nraise SystemExit"), ("code", "y")],
        tags={1: ["nbval-skip"]},
    )
    result = pytester.runpytest(*plugin_args(), "--envpack", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=2)
    assert "NBVAL_SKIP" in result.stdout.str() or "skipped" in result.stdout.str()


@pytest.mark.reliability("C1")
def test_a_broken_notebook_is_a_collection_error_naming_it(pytester: pytest.Pytester) -> None:
    (pytester.path / "broken.ipynb").write_text("{not json")
    result = pytester.runpytest(*plugin_args(), "--envpack", "-p", "no:cacheprovider")
    assert result.ret != 0
    out = result.stdout.str()
    assert "broken.ipynb" in out and "not a readable notebook" in out and "Traceback" not in out


def test_bad_options_are_usage_errors(pytester: pytest.Pytester, tmp_path: Path) -> None:
    bad = tmp_path / "bad.cfg"
    bad.write_text("[x]\nregex: (unclosed\nreplace: y\n")
    result = pytester.runpytest(*plugin_args(), "--envpack", f"--envpack-sanitize-with={bad}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "invalid regex" in result.stderr.str()
    result = pytester.runpytest(
        *plugin_args(), "--envpack", "--envpack-python", sys.executable, "--envpack-kernel", "k"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result = pytester.runpytest(*plugin_args(), "--envpack", "--envpack-label", "novalue")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "KEY=VALUE" in result.stderr.str()


@pytest.mark.parametrize(
    ("source", "tags", "lax", "expected"),
    [
        ("x", [], False, CellOptions()),
        ("x", [], True, CellOptions(check=False)),
        ("# NBVAL_CHECK_OUTPUT\nx", [], True, CellOptions()),
        ("#NBVAL_IGNORE_OUTPUT\nx", [], False, CellOptions(check=False)),
        ("# PYTEST_VALIDATE_IGNORE_OUTPUT", [], False, CellOptions(check=False)),
        ("  # NBVAL_RAISES_EXCEPTION\n1/0", [], False, CellOptions(raises=True)),
        ("x", ["raises-exception"], False, CellOptions(raises=True)),
        ("x", ["nbval-raises-exception"], False, CellOptions(raises=True)),
        ("x", ["nbval-skip"], False, CellOptions(skip=True)),
        ("x", ["nbval-ignore-output"], False, CellOptions(check=False)),
        ("x", ["nbval-check-output"], True, CellOptions()),
        ("# NBVAL_CHECK_OUTPUT", ["nbval-ignore-output"], False, CellOptions()),  # comment wins
        ("# NBVAL_IGNORE_OUTPUT", ["nbval-check-output"], False, CellOptions(check=False)),
        ("print('# NBVAL_SKIP')", [], False, CellOptions()),  # not a comment
        ("x", "nbval-skip", False, CellOptions()),  # tags that are not a list are ignored
    ],
)
def test_cell_options_follow_nbval(source, tags, lax, expected) -> None:
    cell = {"cell_type": "code", "source": source, "metadata": {"tags": tags}}
    assert cell_options(cell, lax) == expected


@pytest.mark.parametrize(
    ("result", "options", "fails"),
    [
        (CellResult(0, "same"), CellOptions(), False),
        (CellResult(0, "skipped"), CellOptions(), False),
        (CellResult(0, "differs", diff="-a\n+b"), CellOptions(), True),
        (CellResult(0, "differs", diff="-a\n+b"), CellOptions(check=False), False),
        (CellResult(0, "image-differs"), CellOptions(), False),
        (CellResult(0, "new-error", ename="E", evalue="v"), CellOptions(check=False), True),
        (CellResult(0, "new-error", ename="E", evalue="v"), CellOptions(raises=True), False),
        (CellResult(0, "error", ename="E", evalue="v"), CellOptions(), True),
        (CellResult(0, "error", ename="E", evalue="v"), CellOptions(raises=True), False),
        (CellResult(0, "not-run"), CellOptions(check=False), True),
    ],
)
def test_verdict_per_status(result, options, fails) -> None:
    reason = verdict(result, options)
    assert (reason is not None) == fails
    if result.ename and fails:
        assert "E: v" in (reason or "")


def test_a_cell_marked_to_raise_must_raise_the_stored_exception() -> None:
    raised = CellResult(0, "new-error", ename="RuntimeError", evalue="Foo")
    cell = {"outputs": [{"output_type": "error", "ename": "NameError", "evalue": "x"}]}
    assert stored_error(cell) == "NameError" and stored_error({"outputs": []}) is None
    reason = verdict(raised, CellOptions(raises=True), original_error="NameError")
    assert reason == "the cell raised RuntimeError; the stored notebook has NameError"
    assert (
        verdict(raised, CellOptions(raises=True, check=False), original_error="NameError") is None
    )
    assert verdict(raised, CellOptions(raises=True), original_error="RuntimeError") is None
    assert verdict(raised, CellOptions(raises=True)) is None  # nothing stored: any exception


def test_images_count_only_when_asked() -> None:
    assert verdict(CellResult(0, "image-differs"), CellOptions(), check_images=True)
    assert verdict(CellResult(0, "image-differs"), CellOptions(check=False), True) is None


def test_sanitizer_files_use_nbval_format_and_are_bounded(tmp_path: Path) -> None:
    cfg = tmp_path / "s.cfg"
    cfg.write_text(
        "[regex1]\nregex: \\d{1,2}/\\d{1,2}/\\d{2,4}\nreplace: DATE-STAMP\n\n"
        "[regex2]\nregex: \\d+\nreplace: N\nnot a pair\n"
    )
    pairs = read_sanitize_file(cfg)
    assert [(p.pattern, r) for p, r in pairs] == [
        (r"\d{1,2}/\d{1,2}/\d{2,4}", "DATE-STAMP"),
        (r"\d+", "N"),
    ]
    big = tmp_path / "big.cfg"
    big.write_bytes(b"#" * (2 << 20))
    with pytest.raises(InputError, match="larger than 1 MiB"):
        read_sanitize_file(big)
    with pytest.raises(InputError, match="cannot read"):
        read_sanitize_file(tmp_path / "missing.cfg")


def _executed(path: Path) -> dict:
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, kernel_name="python3", allow_errors=True).execute()
    return nb


def test_sanitizers_make_a_real_rerun_reproduce(tmp_path: Path, kernel_python: str) -> None:
    path = write_nb(
        tmp_path / "t.ipynb",
        [("code", "import time\nprint('at', time.time_ns())"), ("code", "print('fixed')")],
    )
    first, second = _executed(path), _executed(path)
    plain = compare_sanitized(first, second, [])
    assert [c.status for c in plain.cells] == ["differs", "same"]
    cfg = tmp_path / "s.cfg"
    cfg.write_text("[t]\nregex: at \\d+\nreplace: at T\n")
    cleaned = compare_sanitized(first, second, read_sanitize_file(cfg))
    assert [c.status for c in cleaned.cells] == ["same", "same"]
    assert "at 1" in "".join(first.cells[0].outputs[0]["text"])  # the notebooks stay untouched
