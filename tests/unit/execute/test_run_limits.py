"""Rerun limits: defaults, configuration and how a stopped cell is named (RELIABILITY L4). The
real-container checks are in tests/integration/test_untrusted_run.py."""

from __future__ import annotations

import pytest

from jupyter_envpack.cli import build_parser, run_options_from_args
from jupyter_envpack.config import EnvPack
from jupyter_envpack.errors import InputError
from jupyter_envpack.execute import RunOptions
from jupyter_envpack.execute.limits import RunLimits, limit_cause


@pytest.mark.reliability("L4")
def test_limits_are_on_by_default() -> None:
    config = RunOptions().effective_limits().host_config()
    assert config["mem_limit"] == config["memswap_limit"] == 2 * 2**30
    assert config["nano_cpus"] == 2 * 10**9 and config["pids_limit"] == 512
    assert config["read_only"] is True and config["cap_drop"] == ["ALL"]
    assert config["security_opt"] == ["no-new-privileges"]
    assert config["tmpfs"]["/tmp"].startswith("rw,nosuid,nodev,size=")
    assert [(m["Target"], m["Type"]) for m in config["mounts"]] == [("/home/envpack", "volume")]
    assert RunOptions(mem_limit="96m").effective_limits().to_json()["memory"] == 96 * 2**20


@pytest.mark.reliability("L4")
def test_limits_come_from_traitlets_and_options(monkeypatch: pytest.MonkeyPatch) -> None:
    config = EnvPack(run_memory="1g", run_cpus=0.5, run_pids=64, run_read_only=False)
    opts = config.run_options(pids=128)
    assert opts.limits == RunLimits(memory="1g", cpus=0.5, pids=128, read_only=False)
    assert "mounts" not in opts.limits.host_config()
    args = build_parser().parse_args(["run", "nb.ipynb", "--cpus", "1.5", "--pids", "100"])
    limits = run_options_from_args(args).limits
    assert (limits.cpus, limits.pids, limits.memory) == (1.5, 100, "2g")
    for bad in (RunLimits(cpus=0), RunLimits(pids=3), RunLimits(memory="1k")):
        with pytest.raises(InputError):
            RunOptions(limits=bad).validate()


@pytest.mark.reliability("L4")
@pytest.mark.parametrize(
    ("ename", "evalue", "cause"),
    [
        ("MemoryError", "", "out-of-memory"),
        ("BlockingIOError", "[Errno 11] Resource temporarily unavailable", "pids-limit"),
        ("OSError", "[Errno 30] Read-only file system: '/opt/x'", "read-only"),
        ("OSError", "[Errno 2] No such file or directory", None),
        ("ValueError", "Read-only file system", None),
    ],
)
def test_the_limit_that_stopped_a_cell_is_named(ename: str, evalue: str, cause: str) -> None:
    error = {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": []}
    cells = [
        {"cell_type": "markdown", "source": "x"},
        {"cell_type": "code", "outputs": [{"output_type": "stream", "text": "MemoryError"}]},
        {"cell_type": "code", "outputs": [error]},
    ]
    assert limit_cause({"cells": cells}) == cause
