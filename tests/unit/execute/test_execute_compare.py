"""Parameters (RELIABILITY H7), the runner's result transport and the cell-by-cell report."""

from __future__ import annotations

import ast
import base64
import gzip
import keyword
import unicodedata

import nbformat
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jupyter_envpack.errors import InputError, RunError
from jupyter_envpack.execute.compare import compare_notebooks, sanitize
from jupyter_envpack.execute.parameters import parameters_cell_source, parse_cli_parameters
from jupyter_envpack.execute.result_block import BEGIN, END, extract_result
from jupyter_envpack.execute.run import parse_memory

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


@pytest.mark.reliability("H7")
@given(st.dictionaries(st.text(min_size=1, max_size=20), json_values, max_size=5))
def test_parameter_cells_are_plain_literal_assignments(params: dict) -> None:
    valid = all(
        k.isidentifier() and not keyword.iskeyword(k) and unicodedata.normalize("NFKC", k) == k
        for k in params
    )
    if not valid:
        with pytest.raises(InputError):
            parameters_cell_source(params)
        return
    tree = ast.parse(parameters_cell_source(params))
    assert len(tree.body) == len(params)
    for node, (name, value) in zip(tree.body, params.items(), strict=True):
        assert isinstance(node, ast.Assign) and node.targets[0].id == name
        assert ast.literal_eval(node.value) == value


@pytest.mark.reliability("H7")
@pytest.mark.parametrize(
    "name", ["x=1\nimport os;os.system('id')\ny", "class", "1a", "a b", "", "\u00aa", "\ufb01le"]
)
def test_injection_names_are_refused(name: str) -> None:
    with pytest.raises(InputError, match="invalid parameter name"):
        parameters_cell_source({name: 1})


def test_cli_parameters_parse_json_like_papermill() -> None:
    assert parse_cli_parameters([["n", "3"], ["s", "hello"], ["f", "0.5"], ["l", "[1, 2]"]]) == {
        "n": 3,
        "s": "hello",
        "f": 0.5,
        "l": [1, 2],
    }
    with pytest.raises(InputError):
        parse_cli_parameters([["x", "NaN"]])
    with pytest.raises(InputError):
        parse_cli_parameters([["big", "x" * 300_000]])


def test_memory_limits() -> None:
    assert parse_memory("512m") == 512 * 2**20 and parse_memory("2g") == 2 * 2**30
    for bad in ("lots", "1k", "-5m"):
        with pytest.raises(InputError):
            parse_memory(bad)


def test_result_transport_round_trip_and_corruption() -> None:
    text = nbformat.writes(nbformat.v4.new_notebook())
    blob = base64.b64encode(gzip.compress(text.encode())).decode()
    log = (
        "noise\n"
        + BEGIN
        + "\n"
        + "\n".join(blob[i : i + 76] for i in range(0, len(blob), 76))
        + "\n"
        + END
        + "\n"
    )
    assert extract_result(log) == text
    stamped = "\n".join(f"2026-11-25T10:00:00.000000000Z {ln}" for ln in log.splitlines())
    assert extract_result(stamped) == text
    with pytest.raises(RunError, match="no result"):
        extract_result("only noise")
    with pytest.raises(RunError, match="corrupt"):
        extract_result(f"{BEGIN}\n!!!!\n{END}")


def _nb(*cells) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    for outputs in cells:
        c = nbformat.v4.new_code_cell("x")
        if outputs is not None:
            c.outputs = [nbformat.from_dict(o) for o in outputs]
            c.execution_count = 1
        nb.cells.append(c)
    return nb


def out(text: str, name: str = "stdout") -> dict:
    return {"output_type": "stream", "name": name, "text": text}


def err(ename: str) -> dict:
    return {"output_type": "error", "ename": ename, "evalue": "boom", "traceback": []}


def png(data: str) -> dict:
    return {
        "output_type": "display_data",
        "data": {"image/png": data, "text/plain": "<Figure>"},
        "metadata": {},
    }


def test_report_statuses() -> None:
    original = _nb(
        [out("1\n")], [out("a")], [err("ValueError")], [out("ok")], None, [png("AAA")], [out("z")]
    )
    rerun = _nb(
        [out("1\n")],
        [out("b")],
        [err("ValueError")],
        [err("KeyError")],
        [out("new")],
        [png("BBB")],
        None,
    )
    report = compare_notebooks(original, rerun)
    assert [c.status for c in report.cells] == [
        "same",
        "differs",
        "error",
        "new-error",
        "skipped",
        "image-differs",
        "not-run",
    ]
    assert report.cells[3].ename == "KeyError"
    assert "-[stdout] a" in (report.cells[1].diff or "")
    assert not report.reproduced
    assert report.to_json()["summary"]["same"] == 1


def test_sanitizers_and_tolerance() -> None:
    a = "<Obj at 0x7f3a2b4c5d60> 2026-11-25 10:01:02 took 3.2 s\r 50%|█████     | \r100%|██████████|"
    b = "<Obj at 0x7f0000000001> 2025-01-01 00:00:00 took 0.1 s\r100%|██████████|"
    assert sanitize(a) == sanitize(b)
    assert sanitize("\x1b[31mred\x1b[0m") == "red"
    # %timeit chooses its loop count by the machine's speed (seen on a real notebook)
    slow = "8.2 ms ± 41 µs per loop (mean ± std. dev. of 7 runs, 10 loops each)"
    fast = "950 µs ± 3.1 µs per loop (mean ± std. dev. of 7 runs, 1,000 loops each)"
    assert sanitize(slow) == sanitize(fast)
    o, r = _nb([out("loss 0.30000000000000004")]), _nb([out("loss 0.3")])
    assert compare_notebooks(o, r).cells[0].status == "differs"
    assert compare_notebooks(o, r, tolerance=1e-9).cells[0].status == "same"
    o2, r2 = _nb([out("n=10")]), _nb([out("n=11")])
    assert compare_notebooks(o2, r2, tolerance=1e-9).cells[0].status == "differs"


def test_injected_parameters_cell_is_not_compared() -> None:
    original = _nb([out("1")])
    rerun = _nb([out("1")])
    injected = nbformat.v4.new_code_cell("n = 3")
    injected.metadata["tags"] = ["injected-parameters"]
    injected.id = "injected"
    rerun.cells.insert(0, injected)
    rerun.cells[1].id = original.cells[0].id
    assert [c.status for c in compare_notebooks(original, rerun).cells] == ["same"]


def test_envpack_magic_cells_are_skipped_and_neutralised() -> None:
    import importlib.util
    from pathlib import Path

    from jupyter_envpack.execute.compare import only_envpack_magics

    assert only_envpack_magics("%load_ext jupyter_envpack\n%envpack snapshot")
    assert only_envpack_magics("r = %envpack run -p n 3")
    assert not only_envpack_magics("%load_ext jupyter_envpack\nx = 1")
    script = Path(__file__).parents[3] / "jupyter_envpack" / "execute" / "_runner_script.py"
    spec = importlib.util.spec_from_file_location("runner_script", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    src = "%load_ext jupyter_envpack\nif True:\n    %envpack status\nx = 1"
    out = module._without_envpack_magics(src)
    assert out.splitlines()[0].startswith("pass  # skipped by envpack")
    assert out.splitlines()[2] == "    pass  # skipped by envpack: %envpack status"
    assert out.splitlines()[3] == "x = 1"
    assert module._without_envpack_magics("x = 1") == "x = 1"
    # the in-image runner is standalone (stdlib + nbclient): its copy of the pattern must not drift
    from jupyter_envpack.execute.compare import ENVPACK_MAGIC

    assert module.ENVPACK_MAGIC.pattern == ENVPACK_MAGIC.pattern


def _tagged_nb(*cells: tuple[str, list[str]]) -> dict:
    nb = nbformat.v4.new_notebook()
    for source, tags in cells:
        cell = nbformat.v4.new_code_cell(source, execution_count=1)
        cell.metadata["tags"] = tags
        nb.cells.append(cell)
    return nb


@pytest.mark.reliability("H7")
def test_a_cell_that_reassigns_a_parameter_after_injection_is_named() -> None:
    untagged = _tagged_nb(("import os", []), ("# parameters\nn = 2\na, (b, c) = 1, (2, 3)", []))
    [warning] = compare_notebooks(untagged, untagged, parameters={"n": 5, "b": 1}).warnings
    assert warning["cell"] == 1 and warning["names"] == ["b", "n"]
    assert warning["message"].startswith("cell 2 assigns b, n") and "tag cell 2" in warning["hint"]
    tagged = _tagged_nb(("n = 2", ["parameters"]), ("n = 3", []), ("!echo hi\nx: int = n", []))
    found = compare_notebooks(tagged, tagged, parameters={"n": 5, "x": 0}).warnings
    assert [(w["cell"], w["names"]) for w in found] == [(1, ["n"]), (2, ["x"])]
    assert "move it into the `parameters` cell" in found[0]["hint"]
    quiet = compare_notebooks(tagged, tagged, parameters={"m": 1})
    assert quiet.warnings == [] and quiet.to_json()["parameters"] == {"m": 1}
    assert compare_notebooks(untagged, untagged).warnings == []  # no parameters, no warning


def test_nothing_compared_is_its_own_verdict() -> None:
    never_run = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    report = compare_notebooks(never_run, never_run)
    assert [c.status for c in report.cells] == ["skipped"]
    assert report.verdict == "nothing-to-compare" and report.reproduced is False
    assert report.to_json()["verdict"] == "nothing-to-compare"
    assert compare_notebooks(nbformat.v4.new_notebook(), {}).verdict == "nothing-to-compare"
    ran = _tagged_nb(("x = 1", []))
    assert compare_notebooks(ran, ran).verdict == "reproduced"
    report.run_status = "timeout"
    assert report.verdict == "not-reproduced"


def test_progress_counts_code_cells_only() -> None:
    """Issue 12.4: the runner's counter also counts markdown cells ("cell 6/5")."""
    from jupyter_envpack.execute.run import cell_progress, code_cell_ordinals

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), nbformat.v4.new_code_cell("n = 1")]
    nb.cells += [nbformat.v4.new_markdown_cell("x"), nbformat.v4.new_code_cell("print(n)")]
    ordinals = code_cell_ordinals(nb, {"n": 2})  # injected first: no tagged cell
    assert ordinals == [0, 1, 1, 2, 2]
    seen = [cell_progress({"index": i, "done": i, "total": 3}, ordinals) for i in range(5)]
    assert [e.message for e in seen] == ["cell 1/3", "cell 2/3", "cell 2/3", "cell 3/3", "cell 3/3"]
    assert all(0 <= e.progress < 1 for e in seen)
    assert cell_progress({"done": 9, "total": 3}, []).message == "cell 3/3"  # old runner: clamped
