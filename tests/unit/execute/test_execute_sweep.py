"""Sweep rows, names, recorded values and the summary table (pure)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from jupyter_envpack.cluster.slurm import task_ids
from jupyter_envpack.cluster.slurm_sweep import _runtime_seconds
from jupyter_envpack.errors import InputError
from jupyter_envpack.execute.sweep import (
    RECORD_MIME,
    SweepRun,
    read_rows,
    recorded_values,
    rows_from,
    run_name,
    save_run,
    sweep_rows,
    write_summary,
)


def test_axes_make_the_cartesian_product_in_order() -> None:
    rows = sweep_rows(["alpha=0.1,0.2", "seed=1..3"])
    assert len(rows) == 6
    assert rows[0] == {"alpha": 0.1, "seed": 1} and rows[-1] == {"alpha": 0.2, "seed": 3}
    assert sweep_rows(["name=a,b"]) == [{"name": "a"}, {"name": "b"}]  # not JSON: strings
    fixed = rows_from(["seed=1..2"], None, {"alpha": 5})
    assert fixed == [{"alpha": 5, "seed": 1}, {"alpha": 5, "seed": 2}]
    assert rows_from(None, None) == []


@pytest.mark.parametrize("bad", ["alpha", "=1,2", "1x=1", "seed=5..1", "seed=0..5000", "class=1"])
def test_bad_axes_are_refused(bad: str) -> None:
    with pytest.raises(InputError):
        rows_from([bad], None)


def test_duplicate_and_too_large_sweeps_are_refused() -> None:
    with pytest.raises(InputError, match="twice"):
        sweep_rows(["a=1,2", "a=3"])
    with pytest.raises(InputError, match="at most"):
        sweep_rows(["a=1..100", "b=1..100"])


def test_rows_from_csv_and_json(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text("alpha,label\n0.5,run one\n1,x\n")
    assert read_rows(tmp_path / "r.csv") == [
        {"alpha": 0.5, "label": "run one"},
        {"alpha": 1, "label": "x"},
    ]
    (tmp_path / "r.json").write_text(json.dumps([{"seed": 1}, {"seed": 2}]))
    assert rows_from(None, str(tmp_path / "r.json")) == [{"seed": 1}, {"seed": 2}]
    (tmp_path / "bad.json").write_text('{"seed": 1}')
    with pytest.raises(InputError):
        read_rows(tmp_path / "bad.json")
    with pytest.raises(InputError, match="both"):
        rows_from(["a=1"], str(tmp_path / "r.json"))


def test_run_names_are_sortable_safe_file_names() -> None:
    assert run_name("nb", 3, {"alpha": 0.1, "seed": 2}, 12) == "nb.sweep-03-alpha=0.1-seed=2.ipynb"
    hostile = run_name("nb", 0, {"p": "../../etc/x y"}, 2)
    assert "/" not in hostile and " " not in hostile and hostile.endswith(".ipynb")


def test_recorded_values_and_the_summary_csv(tmp_path: Path) -> None:
    nb = {
        "cells": [
            {"outputs": [{"output_type": "display_data", "data": {RECORD_MIME: {"acc": 0.5}}}]},
            {"outputs": [{"output_type": "display_data", "data": {RECORD_MIME: {"acc": 0.9}}}]},
            {"cell_type": "markdown"},
        ]
    }
    assert recorded_values(nb) == {"acc": 0.9}  # the last value wins
    runs = [
        SweepRun(1, {"alpha": 2}, "failed", 1.25, None, {}, "a cell raised"),
        SweepRun(0, {"alpha": 1}, "succeeded", 3.0, "nb.sweep-0.ipynb", {"acc": 0.9}),
        SweepRun(2, {"alpha": "=cmd|' /C calc'!A0"}, "succeeded", None, None, {"acc": -1}),
    ]
    with write_summary(tmp_path / "summary.csv", runs).open() as handle:
        table = list(csv.DictReader(handle))
    assert [r["index"] for r in table] == ["0", "1", "2"]
    assert table[0]["acc"] == "0.9" and table[1]["state"] == "failed"
    assert table[1]["duration_s"] == "1.2"
    assert table[2]["alpha"].startswith("'=")  # no formula for spreadsheets
    assert table[2]["acc"] == "-1"  # numbers stay numbers


def test_save_run_replaces_a_planted_symlink_and_leaves_its_target(tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    canary.write_text("keep")
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "nb.sweep-0.ipynb").symlink_to(canary)
    path = save_run(folder, "nb.sweep-0.ipynb", "{}")
    assert not path.is_symlink() and path.read_text() == "{}" and canary.read_text() == "keep"


def test_slurm_task_ids_and_runtimes() -> None:
    assert task_ids("4") == [4] and task_ids("0-5%2") == [0, 1, 2, 3, 4, 5]
    assert task_ids("1,3-4") == [1, 3, 4] and task_ids("") == []
    assert _runtime_seconds("00:01:05") == 65 and _runtime_seconds("1-00:00:01") == 86401
    assert _runtime_seconds(None) is None
