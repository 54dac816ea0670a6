"""Parameter sweeps: rows of parameters, one run each, and a summary table (pure parts).

``--sweep alpha=0.1,0.2,0.5 --sweep seed=1..10`` is the cartesian product of the axes (30 rows),
in the order given; ``--sweep-file rows.csv|rows.json`` gives the rows directly. Every run's
executed notebook is named by its index and parameters, and :func:`write_summary` writes one CSV
row per run: index, parameters, state, duration and the values the notebook recorded with
:func:`record` (an output of type ``application/vnd.envpack.record+json``).
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError

RECORD_MIME = "application/vnd.envpack.record+json"
MAX_ROWS = 1000
MAX_FILE = 1024 * 1024
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")


def _value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_axis(text: str) -> tuple[str, list[Any]]:
    """``name=v1,v2`` or ``name=1..10`` (inclusive integer range) → (name, values)."""
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or not name.isidentifier() or not values.strip():
        raise InputError(f"cannot read --sweep {text!r}", hint="use NAME=1,2,3 or NAME=1..10")
    found = _RANGE.match(values.strip())
    if found:
        low, high = int(found.group(1)), int(found.group(2))
        if high < low or high - low >= MAX_ROWS:
            raise InputError(f"--sweep {text!r}: the range must go up, by fewer than {MAX_ROWS}")
        return name, list(range(low, high + 1))
    return name, [_value(v.strip()) for v in values.split(",")]


def sweep_rows(axes: Iterable[str]) -> list[dict[str, Any]]:
    """The cartesian product of ``--sweep`` axes, as parameter rows (first axis slowest)."""
    parsed = [parse_axis(a) for a in axes]
    names = [n for n, _ in parsed]
    if len(set(names)) != len(names):
        raise InputError("a --sweep name is given twice", hint="list all its values in one --sweep")
    count = 1
    for _, values in parsed:
        count *= len(values)
    if count > MAX_ROWS:
        raise InputError(f"the sweep has {count} runs; at most {MAX_ROWS}")
    return [
        dict(zip(names, combo, strict=True)) for combo in itertools.product(*(v for _, v in parsed))
    ]


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows from a CSV file (a header line, values read like ``-p``) or a JSON list of objects."""
    source = Path(path)
    with source.open("rb") as handle:
        data = handle.read(MAX_FILE + 1)
    if len(data) > MAX_FILE:
        raise InputError(f"{source} is larger than {MAX_FILE} bytes")
    text = data.decode("utf-8-sig")
    if source.suffix.lower() == ".json":
        rows = json.loads(text)
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise InputError(f"{source} must hold a JSON list of objects")
    else:
        rows = [{k: _value(v) for k, v in r.items()} for r in csv.DictReader(io.StringIO(text))]
    if not rows or len(rows) > MAX_ROWS:
        raise InputError(f"{source} must hold 1 to {MAX_ROWS} rows, not {len(rows)}")
    return [dict(r) for r in rows]


def run_name(stem: str, index: int, row: Mapping[str, Any], total: int) -> str:
    """``<stem>.sweep-03-alpha=0.1-seed=2.ipynb``: sortable, readable, a safe file name."""
    width = max(2, len(str(total - 1)))
    words = "-".join(f"{k}={v}" for k, v in row.items())
    safe = re.sub(r"[^A-Za-z0-9_.=+-]+", "_", words)[:80].strip("._")
    return f"{stem}.sweep-{index:0{width}d}{'-' + safe if safe else ''}.ipynb"


def recorded_values(notebook: Mapping[str, Any]) -> dict[str, Any]:
    """The values a notebook recorded (:func:`record` outputs), the last one per name."""
    found: dict[str, Any] = {}
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []) if isinstance(cell, Mapping) else []:
            value = output.get("data", {}).get(RECORD_MIME) if isinstance(output, Mapping) else None
            if isinstance(value, Mapping):
                found.update({str(k): v for k, v in value.items()})
    return found


def record(name: str, value: Any) -> None:
    """Record ``value`` under ``name`` in the notebook's outputs, for the sweep's summary.

    Inside an image without jupyter-envpack, the same is
    ``display({"application/vnd.envpack.record+json": {name: value}}, raw=True)``.
    """
    from IPython.display import display

    display({RECORD_MIME: {name: value}, "text/plain": f"{name} = {value!r}"}, raw=True)  # type: ignore[no-untyped-call]


@dataclass
class SweepRun:
    """One member of a sweep: its row, and what became of it."""

    index: int
    parameters: dict[str, Any]
    state: str = "pending"
    duration: float | None = None
    output: str | None = None
    values: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    verdict: str | None = None  # the member's report verdict (reproduced, not-reproduced...)


def write_summary(path: str | Path, runs: list[SweepRun]) -> Path:
    """Write the summary CSV (one row per run) and return its path."""
    params = list(dict.fromkeys(k for r in runs for k in r.parameters))
    values = list(dict.fromkeys(k for r in runs for k in r.values))
    target = Path(path)
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", *params, "state", "duration_s", *values, "notebook", "message"])
        for r in sorted(runs, key=lambda r: r.index):
            duration = "" if r.duration is None else f"{r.duration:.1f}"
            writer.writerow(
                [r.index, *(_cell(r.parameters.get(k)) for k in params), r.state, duration]
                + [_cell(r.values.get(k)) for k in values]
                + [r.output or "", r.message]
            )
    return target


def _cell(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not _number(text) else text


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def save_run(folder: Path, name: str, text: str) -> Path:
    """Write one executed notebook atomically (a planted symlink is replaced, never followed)."""
    import os
    import tempfile

    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    target = folder / name
    Path(tmp).replace(target)
    return target


def run_local_sweep(
    image: str,
    notebook: Path,
    rows: list[dict[str, Any]],
    *,
    folder: Path,
    options: Any = None,
    max_parallel: int = 2,
    client: Any = None,
    cancel: Any = None,
    on_done: Callable[[SweepRun], None] | None = None,
) -> list[SweepRun]:
    """Rerun ``notebook`` in ``image`` once per row, ``max_parallel`` at once (a failure stops
    only its own run; a ``cancel`` token stops all, the members not started are ``cancelled``;
    ``on_done`` is called as each member ends)."""
    from concurrent.futures import ThreadPoolExecutor

    from ..execute import RunOptions

    base = options or RunOptions()
    folder.mkdir(parents=True, exist_ok=True)

    def one(index: int) -> SweepRun:
        run = _one_run(image, notebook, rows, index, folder, base, client, cancel)
        if on_done is not None:
            on_done(run)
        return run

    with ThreadPoolExecutor(max_workers=max(1, max_parallel)) as pool:
        return list(pool.map(one, range(len(rows))))


def _one_run(
    image: str,
    notebook: Path,
    rows: list[dict[str, Any]],
    index: int,
    folder: Path,
    base: Any,
    client: Any,
    cancel: Any,
) -> SweepRun:
    from dataclasses import replace

    from ..execute import run_notebook

    row = rows[index]
    run = SweepRun(index, row)
    if cancel is not None and cancel.cancelled:
        run.state, run.message = "cancelled", "the sweep was cancelled"
        return run
    output = folder / run_name(notebook.stem, index, row, len(rows))
    try:
        result = run_notebook(
            image,
            notebook,
            replace(base, parameters=row, output=str(output)),
            client=client,
            cancel=cancel,
        )
    except Exception as exc:
        stopped = cancel is not None and cancel.cancelled
        run.state = "cancelled" if stopped else "failed"
        run.message = getattr(exc, "message", str(exc))[:300]
        return run
    run.duration, run.output = result.duration, str(result.output_path)
    run.state = "succeeded" if result.exit_code == 0 else "failed"
    run.message, run.verdict = result.report.run_status, result.report.verdict
    with contextlib.suppress(OSError, ValueError):
        run.values = recorded_values(json.loads(Path(result.output_path).read_text()))
    return run


def rows_from(
    axes: list[str] | None, file: str | None, fixed: Mapping[str, Any] | None = None
) -> list[dict[str, Any]]:
    """The sweep's rows from ``--sweep`` axes and/or ``--sweep-file`` (none: ``[]``), each on top
    of the fixed ``-p`` parameters and checked like them."""
    from .parameters import validate_parameters

    if axes and file:
        raise InputError("give --sweep or --sweep-file, not both")
    rows = read_rows(file) if file else sweep_rows(axes or [])
    if not axes and not file:
        return []
    return [validate_parameters({**dict(fixed or {}), **row}) for row in rows]


def sweep_folder(notebook: str | Path, output: str | None = None) -> Path:
    """Where a sweep's notebooks and ``summary.csv`` go: ``--output`` or ``<stem>.sweep/``."""
    nb = Path(notebook)
    return Path(output) if output else nb.with_name(f"{nb.stem}.sweep")


def wait_members(
    read: Callable[[], dict[int, Any]],
    total: int,
    timeout: float,
    poll: float,
    reporter: Any,
    pause: Callable[[float], None] | None = None,
) -> dict[int, Any]:
    """Call ``read`` (index → ``JobStatus``) until all ``total`` members are over; return it.

    Between reads it sleeps ``poll`` seconds, or calls ``pause(seconds_left)`` (a backend that
    can watch for a change blocks there)."""
    import time

    from ..errors import ClusterError
    from ..events import ProgressEvent

    end = time.monotonic() + timeout
    while True:
        states = read()
        done = sum(1 for s in states.values() if s.terminal)
        if reporter is not None:
            reporter(ProgressEvent("sweep", f"{done} of {total} runs finished", "progress"))
        if len(states) >= total and done == len(states):
            return states
        if time.monotonic() > end:
            raise ClusterError(f"the sweep did not finish within {timeout:g} s")
        if pause is not None:
            pause(end - time.monotonic())
        else:
            time.sleep(poll)


def collect_runs(
    rows: list[dict[str, Any]],
    states: dict[int, Any],
    read_log: Callable[[int], str],
    *,
    folder: Path,
    stem: str,
) -> list[SweepRun]:
    """One :class:`SweepRun` per row, its executed notebook read from its log and saved."""
    from .result_block import extract_result

    runs = []
    for index, row in enumerate(rows):
        status = states[index]
        run = SweepRun(index, row, status.state.value, message=status.message)
        try:
            text = extract_result(read_log(index))
        except Exception as exc:  # a member without a result: its row says why
            run.message = f"{status.message}; no executed notebook ({type(exc).__name__})"
        else:
            run.output = str(save_run(folder, run_name(stem, index, row, len(rows)), text))
            run.values = recorded_values(json.loads(text))
        runs.append(run)
    return runs
