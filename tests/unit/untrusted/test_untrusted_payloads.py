"""Payloads a hostile container hands back, decoded with caps (RELIABILITY L6); the real-container
versions are in tests/integration (test_untrusted_run.py, test_cluster_swarm.py)."""

from __future__ import annotations

import base64
import gzip
import resource
import zlib
from pathlib import Path

import pytest

from jupyter_envpack.bounded import gunzip_capped, lines_capped, read_capped
from jupyter_envpack.errors import ResultTooLargeError, RunError
from jupyter_envpack.execute.result_block import BEGIN, END, extract_result, extract_result_lines
from jupyter_envpack.operations.model import Operation, new_operation_id
from jupyter_envpack.operations.store import OperationStore


def bomb(gib: int) -> bytes:
    packer, zeros = zlib.compressobj(9, zlib.DEFLATED, 31), bytes(2**20)
    return b"".join(packer.compress(zeros) for _ in range(gib * 1024)) + packer.flush()


@pytest.mark.reliability("L6")
def test_a_gzip_bomb_in_a_result_stops_at_the_cap() -> None:
    blob = base64.b64encode(bomb(2)).decode()
    log = ["noise", BEGIN, *(blob[i : i + 76] for i in range(0, len(blob), 76)), END]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ResultTooLargeError, match="larger than 200 MiB") as info:
        extract_result_lines(iter(log))
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 400
    assert info.value.status == 413 and info.value.reason == "too-large"


@pytest.mark.reliability("L6")
def test_results_that_decode_still_do_and_corrupt_ones_are_clear() -> None:
    blob = base64.b64encode(gzip.compress(b'{"cells": []}')).decode()
    assert extract_result(f"x\n{BEGIN}\n{blob}\n{END}\n") == '{"cells": []}'
    with pytest.raises(RunError, match="corrupt"):
        extract_result(f"{BEGIN}\nnot*base64\n{END}\n")
    truncated = base64.b64encode(gzip.compress(b"x" * 1000)[:-12]).decode()
    with pytest.raises(RunError, match="corrupt"):
        extract_result(f"{BEGIN}\n{truncated}\n{END}\n")
    with pytest.raises(RunError, match="holds no result"):
        extract_result("only noise\n")


@pytest.mark.reliability("L6")
def test_streams_are_read_with_a_cap() -> None:
    endless = (b"y" * 2**20 for _ in range(10**6))  # a terabyte, never joined
    with pytest.raises(ResultTooLargeError, match="the log is larger than 8 MiB"):
        read_capped(endless, 8 * 2**20, "the log")
    lines = list(lines_capped((b"a" * 2**20 for _ in range(10**6)), 4 * 2**20))
    assert len(lines) == 1 and "the rest was not read" in lines[0]
    assert gunzip_capped(gzip.compress(b"ok"), 10, "x") == b"ok"
    with pytest.raises(ResultTooLargeError):
        gunzip_capped(gzip.compress(b"z" * 100), 10, "x")


@pytest.mark.reliability("L6")
def test_events_per_operation_are_bounded_in_sqlite(tmp_path: Path) -> None:
    store = OperationStore(tmp_path / "ops.sqlite", max_events=100)
    op = store.create(Operation(id=new_operation_id(), kind="fake", path="nb.ipynb"))
    for i in range(5000):
        store.add_event(op.id, "progress", {"kind": "warning", "message": f"spam {i}"})
    assert store.transition(op.id, "running") is not None  # state changes are always kept
    events = store.events(op.id, limit=10_000)
    assert len(events) == 101
    assert "were dropped" in events[99].data["message"]
    assert events[-1].data == {"state": "running"}
    reopened = OperationStore(tmp_path / "ops.sqlite", max_events=100)
    assert reopened.add_event(op.id, "progress", {"message": "more"}) is None
    store.close()
    reopened.close()
