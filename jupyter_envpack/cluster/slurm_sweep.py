"""Follow a sweep that runs as one Slurm job array, and collect its members' notebooks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..execute.sweep import SweepRun, collect_runs, wait_members


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
    from .slurm import status_from_fields

    fields: dict[int, dict[str, str]] = {}

    def read() -> dict[int, Any]:
        fields.clear()
        fields.update(backend.members(handle))
        return {i: status_from_fields(f) for i, f in fields.items()}

    states = wait_members(read, len(rows), timeout, poll, reporter)
    runs = collect_runs(
        rows, states, lambda i: backend.result_log(f"{handle}_{i}"), folder=folder, stem=stem
    )
    for run in runs:
        run.duration = _runtime_seconds(fields[run.index].get("RunTime"))
    return runs
