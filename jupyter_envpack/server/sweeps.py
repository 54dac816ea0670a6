"""A ``run`` operation with ``sweep``: the local parameter sweep of issue 14 from the sidebar.

``options.sweep`` maps each parameter to its values in the CLI's ``--sweep`` grammar
(``{"a": "0.1,0.2", "seed": "1..3"}``); the rows are parsed by :mod:`..execute.sweep`, the image
is built once (or ``image`` is used), then :func:`~..execute.sweep.run_local_sweep` reruns the
notebook once per row, ``max_parallel`` at once. The executed notebooks and ``summary.csv`` go to
``<stem>.sweep/`` beside the notebook.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..events import CancelToken, ProgressEvent
from ..operations import OperationContext

Reporter = Callable[[ProgressEvent], None]


def sweep_rows_of(options: dict[str, Any]) -> list[dict[str, Any]]:
    """The parameter rows of ``options.sweep`` on top of ``options.parameters`` (validated)."""
    from ..execute.sweep import rows_from

    sweep = options.get("sweep") or {}
    if not all(
        isinstance(v, str | int | float) and not isinstance(v, bool) for v in sweep.values()
    ):
        raise InputError(
            'each sweep value must be text such as "0.1,0.2" or "1..3"',
            hint='send {"sweep": {"alpha": "0.1,0.2", "seed": "1..3"}}',
        )
    axes = [f"{name}={values}" for name, values in sweep.items()]
    return rows_from(axes, None, options.get("parameters") or {})


def check_sweep(options: dict[str, Any]) -> None:
    """Refuse what a sweep cannot combine with (raise ``InputError``)."""
    for other in ("output", "engine"):
        if options.get(other) not in (None, "docker"):
            raise InputError(
                f"a sweep cannot be combined with {other!r}",
                hint=f"drop {other!r}: each member's notebook goes to <notebook>.sweep/",
            )
    if not sweep_rows_of(options):
        raise InputError("the sweep has no rows", hint='send {"sweep": {"seed": "1..3"}}')


def sweep_folder_of(op: OperationContext) -> tuple[Path, str]:
    """Create ``<stem>.sweep/`` beside the notebook; return it and its API path.

    The folder is checked like any output (inside the root; a planted symlink pointing out of
    it is refused) before anything is written there.
    """
    stem = Path(op.path).stem
    api_folder = posixpath.join(posixpath.dirname(op.path), f"{stem}.sweep")
    folder = op.notebook.parent / f"{stem}.sweep"
    if not folder.is_symlink():
        folder.mkdir(exist_ok=True)
    probe = op.resolve_output(posixpath.join(api_folder, f"{stem}.ipynb"))
    return probe.parent, api_folder


def run_sweep(
    op: OperationContext,
    image: str,
    options: Any,
    reporter: Reporter,
    cancel: CancelToken,
) -> dict[str, Any]:
    """Run every row of the sweep in ``image``; return the ``sweep`` part of the run result."""
    from ..execute.sweep import run_local_sweep, write_summary

    rows = sweep_rows_of(op.options)
    folder, api_folder = sweep_folder_of(op)
    parallel = int(op.options.get("max_parallel") or 2)
    reporter(ProgressEvent("sweep", f"{len(rows)} runs, {parallel} at once", "step"))
    runs = run_local_sweep(
        image,
        op.notebook,
        rows,
        folder=folder,
        options=options,
        max_parallel=parallel,
        cancel=cancel,
        on_done=lambda run: reporter(
            ProgressEvent("sweep", f"run {run.index} {run.state}", "info")
        ),
    )
    cancel.raise_if_cancelled("sweep")
    summary = write_summary(folder / "summary.csv", runs)
    return {
        "folder": api_folder,
        "summary_csv": op.relative(summary),
        "runs": [
            {
                "index": r.index,
                "parameters": r.parameters,
                "state": r.state,
                "verdict": r.verdict,
                "duration": None if r.duration is None else round(r.duration, 3),
                "output_path": op.relative(r.output) if r.output else None,
                "values": r.values,
                "message": r.message,
            }
            for r in sorted(runs, key=lambda r: r.index)
        ],
    }
