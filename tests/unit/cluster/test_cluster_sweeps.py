"""Sweeps in the job index: one row per sweep, member counts, ``--members`` (all backends)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jupyter_envpack.cluster.base import JobState, JobStatus
from jupyter_envpack.cluster.sweeps import record_local_sweep, summarize
from jupyter_envpack.execute.sweep import SweepRun


def test_a_sweep_sums_up_its_members() -> None:
    done, failed = JobStatus(JobState.SUCCEEDED), JobStatus(JobState.FAILED)
    running = JobStatus(JobState.RUNNING)
    assert summarize({0: done, 1: done}, 2).state is JobState.SUCCEEDED
    assert summarize({0: done, 1: failed}, 2).state is JobState.FAILED  # one failed: not a success
    assert summarize({0: failed, 1: running}, 2).state is JobState.RUNNING  # the others go on
    mixed = summarize({0: done}, 3)  # members the backend does not show yet are queued
    assert (mixed.state, mixed.message) == (JobState.PENDING, "2 queued, 1 succeeded")


def test_jobs_lists_a_local_sweep_with_its_members(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from jupyter_envpack.cli import main

    monkeypatch.setenv("ENVPACK_JOBS_DB", str(tmp_path / "jobs.sqlite"))
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "no-config"))
    runs = [SweepRun(i, {"seed": i}, "failed" if i == 1 else "succeeded") for i in range(3)]
    record = record_local_sweep("nb.ipynb", "envpack/nb:1", runs, 2)
    assert main(["jobs", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert (listed["id"], listed["backend"], listed["state"]) == (record.id, "local", "failed")
    assert listed["message"] == "2 succeeded, 1 failed"
    assert main(["jobs", "--members", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    states = [m["state"] for m in listed["sweep"]["member_states"]]
    assert states == ["succeeded", "failed", "succeeded"]
