"""Follow a sweep that runs as one Slurm job array, and collect its members' notebooks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..execute.sweep import SweepRun, recorded_values, run_name, save_run


def _runtime_seconds(text: str | None) -> float | None:
    """Slurm's ``RunTime`` (``[D-]HH:MM:SS``) in seconds."""
    if not text or ":" not in text:
        return None
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":") if p.isdigit()]
    if len(parts) != 3:
        return None
    return (int(days or 0) * 24 + parts[0]) * 3600 + parts[1] * 60 + parts[2]


def follow_slurm_sweep(
    backend: Any,
    handle: str,
    rows: list[dict[str, Any]],
    *,
    folder: Path,
    stem: str,
    timeout: float,
    poll: float = 2.0,
    reporter: Any = None,
) -> list[SweepRun]:
    """Wait for every task of Slurm job array ``handle``, fetch each notebook, return the runs."""
    import time

    from ..errors import ClusterError
    from ..events import ProgressEvent
    from ..execute.runner import extract_result
    from .slurm import status_from_fields

    end = time.monotonic() + timeout
    while True:
        fields = backend.members(handle)
        states = {i: status_from_fields(f) for i, f in fields.items()}
        done = sum(1 for s in states.values() if s.terminal)
        if reporter is not None:
            reporter(ProgressEvent("sweep", f"{done} of {len(rows)} runs finished", "progress"))
        if len(states) >= len(rows) and done == len(states):
            break
        if time.monotonic() > end:
            raise ClusterError(f"the sweep {handle} did not finish within {timeout:g} s")
        time.sleep(poll)
    runs = []
    for index, row in enumerate(rows):
        status = states[index]
        run = SweepRun(index, row, status.state.value, message=status.message)
        run.duration = _runtime_seconds(fields[index].get("RunTime"))
        try:
            text = extract_result(backend.result_log(f"{handle}_{index}"))
        except Exception as exc:  # a member without a result: its row says why
            run.message = f"{status.message}; no executed notebook ({type(exc).__name__})"
        else:
            run.output = str(save_run(folder, run_name(stem, index, row, len(rows)), text))
            run.values = recorded_values(json.loads(text))
        runs.append(run)
    return runs
