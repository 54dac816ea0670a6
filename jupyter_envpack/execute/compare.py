"""Compare an executed notebook with the original, cell by cell → :class:`Report`.

Outputs are sanitised before comparison (memory addresses, timestamps, ANSI colours, ``\\r``
progress bars); numbers may differ within a relative ``tolerance``. A cell never executed in the
original is ``skipped``; a cell the rerun never reached is ``not-run``.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Any

from .parameters import parameter_overrides
from .reasons import cell_source, guess_reason

REPORT_SCHEMA = "envpack.report/1"
REPRODUCED = frozenset({"same", "error", "skipped"})
NOT_COMPARED = frozenset({"skipped"})

VERDICT_REPRODUCED = "reproduced"
VERDICT_DIFFERS = "not-reproduced"
VERDICT_NOTHING = "nothing-to-compare"
"""``Report.verdict``: a notebook with no executed code cell proves nothing (issue 12.2)."""

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_ADDR = re.compile(r"0x[0-9a-fA-F]{6,16}")
_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"
)
_CLOCK = re.compile(r"\b\d{1,2}:\d{2}:\d{2}(?:\.\d+)?\b")
_DURATION = re.compile(r"\b\d+(?:\.\d+)?\s?(?:ns|µs|us|ms|s|sec|seconds)\b")
# %timeit's summary: IPython picks the loop count from the machine's speed
_TIMEIT = re.compile(r"\(mean ± std\. dev\. of \d+ runs?, [\d,]+ loops? each\)")
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
_TQDM = re.compile(r"\d+%\|[^|]*\|")


@dataclass
class CellResult:
    """The verdict for one code cell (``index`` is its position among all cells)."""

    index: int
    status: str
    diff: str | None = None
    ename: str | None = None
    evalue: str | None = None
    source: str | None = None  # a differing cell's source, shown beside its diff
    reason: dict[str, str] | None = None  # a guessed cause (reasons.guess_reason)

    def to_json(self) -> dict[str, Any]:
        """JSON form (``diff``/``ename``/``evalue``/``source``/``reason`` only when set)."""
        out: dict[str, Any] = {"index": self.index, "status": self.status}
        for key in ("diff", "ename", "evalue", "source", "reason"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass
class Report:
    """Cell-by-cell reproducibility of one rerun."""

    cells: list[CellResult] = field(default_factory=list)
    run_status: str = "completed"
    image: str | None = None
    output_path: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    engine: str = "docker"
    limits: dict[str, Any] | None = None  # the container's resource limits (RELIABILITY L4)
    origin: str | None = None
    """``reconstructed`` when the environment was reconstructed (not what ran), with
    ``as_of`` its package date: a stored output that differs may be the reconstruction's fault."""
    as_of: str | None = None

    @property
    def compared(self) -> int:
        """How many code cells had a stored result to compare with."""
        return sum(c.status not in NOT_COMPARED for c in self.cells)

    @property
    def verdict(self) -> str:
        """``reproduced``, ``not-reproduced`` or ``nothing-to-compare``."""
        if self.run_status != "completed" or not all(c.status in REPRODUCED for c in self.cells):
            return VERDICT_DIFFERS
        return VERDICT_REPRODUCED if self.compared else VERDICT_NOTHING

    @property
    def reproduced(self) -> bool:
        """True when at least one code cell was compared and every compared cell reproduced."""
        return self.verdict == VERDICT_REPRODUCED

    @property
    def summary(self) -> dict[str, int]:
        """Count of cells per status."""
        out: dict[str, int] = {}
        for c in self.cells:
            out[c.status] = out.get(c.status, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        """The ``envpack.report/1`` object (the CLI's ``run --json``)."""
        return {
            "schema": REPORT_SCHEMA,
            "reproduced": self.reproduced,
            "verdict": self.verdict,
            "run_status": self.run_status,
            "image": self.image,
            "engine": self.engine,
            "output_path": self.output_path,
            "cells": [c.to_json() for c in self.cells],
            "summary": self.summary,
            "parameters": self.parameters,
            "warnings": self.warnings,
            **({"limits": self.limits} if self.limits is not None else {}),
            **(
                {
                    "origin": self.origin,
                    "as_of": self.as_of,
                    "reconstruction": {"as_of_used": self.as_of},  # the snapshot's key too
                }
                if self.origin
                else {}
            ),
        }


def sanitize(text: str) -> str:
    """Remove what legitimately changes between runs."""
    text = _ANSI.sub("", text)
    text = "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))
    text = _TQDM.sub("<progress>", text)
    text = _ADDR.sub("0x<addr>", text)
    text = _TIME.sub("<time>", text)
    text = _CLOCK.sub("<time>", text)
    text = _DURATION.sub("<duration>", text)
    text = _TIMEIT.sub("(timeit runs)", text)
    return text.rstrip()


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return str(value) if value is not None else ""


def _summarise(outputs: list[Any]) -> tuple[list[str], list[str], tuple[str, str] | None]:
    """(text parts, image payloads, first error) of a cell's outputs."""
    texts: list[str] = []
    images: list[str] = []
    error: tuple[str, str] | None = None
    streams: dict[str, str] = {}
    for out in outputs or []:
        kind = out.get("output_type")
        if kind == "stream":
            streams[out.get("name", "stdout")] = streams.get(out.get("name", "stdout"), "") + _text(
                out.get("text")
            )
        elif kind in {"execute_result", "display_data"}:
            data = out.get("data", {})
            if "text/plain" in data:
                texts.append(_text(data["text/plain"]))
            elif "text/html" in data:
                texts.append(_text(data["text/html"]))
            for mime in ("image/png", "image/jpeg", "image/svg+xml"):
                if mime in data:
                    images.append(_text(data[mime]).strip())
        elif kind == "error" and error is None:
            error = (str(out.get("ename", "")), str(out.get("evalue", "")))
    texts = [f"[{name}] {value}" for name, value in sorted(streams.items())] + texts
    return texts, images, error


def _numbers_close(a: str, b: str, tolerance: float) -> bool:
    if _NUMBER.sub("#", a) != _NUMBER.sub("#", b):
        return False
    for x, y in zip(_NUMBER.findall(a), _NUMBER.findall(b), strict=True):
        fx, fy = float(x), float(y)
        if not math.isclose(fx, fy, rel_tol=tolerance, abs_tol=tolerance * 1e-3):
            return False
    return True


def _short_diff(a: str, b: str, limit: int = 2000) -> str:
    lines = list(
        difflib.unified_diff(a.splitlines(), b.splitlines(), "original", "rerun", lineterm="", n=1)
    )
    text = "\n".join(lines)
    return text if len(text) <= limit else text[:limit] + "\n…"


ENVPACK_MAGIC = re.compile(r"^\s*(\w+\s*=\s*)?%+\s*(envpack\b|(re)?load_ext\s+jupyter_envpack\b)")
"""envpack's own magics: not rerun in the image (the runner neutralises them)."""


def only_envpack_magics(source: str) -> bool:
    """True when every non-blank line of ``source`` is an envpack magic."""
    lines = [ln for ln in source.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return bool(lines) and all(ENVPACK_MAGIC.match(ln) for ln in lines)


def compare_cell(
    index: int, original: Any, rerun: Any | None, tolerance: float = 0.0
) -> CellResult:
    """Verdict for one code cell."""
    if original.get("execution_count") is None and not original.get("outputs"):
        return CellResult(index, "skipped")
    if only_envpack_magics(_text(original.get("source"))):
        return CellResult(index, "skipped")
    if rerun is None or (rerun.get("execution_count") is None and not rerun.get("outputs")):
        return CellResult(index, "not-run")
    o_texts, o_images, o_err = _summarise(original.get("outputs", []))
    r_texts, r_images, r_err = _summarise(rerun.get("outputs", []))
    if r_err is not None:
        if o_err is not None and o_err[0] == r_err[0]:
            return CellResult(index, "error", ename=r_err[0], evalue=r_err[1][:500])
        return CellResult(index, "new-error", ename=r_err[0], evalue=r_err[1][:500])
    a = sanitize("\n".join(o_texts))
    b = sanitize("\n".join(r_texts))
    if a != b and not (tolerance > 0 and _numbers_close(a, b, tolerance)):
        return _differs(original, _short_diff(a, b), "\n".join(o_texts), "\n".join(r_texts), index)
    if o_err is not None:
        return CellResult(
            index, "differs", diff=f"the original raised {o_err[0]}; the rerun did not"
        )
    if o_images != r_images:
        return CellResult(index, "image-differs", source=cell_source(original))
    return CellResult(index, "same")


def _differs(cell: Any, diff: str, original: str, rerun: str, index: int) -> CellResult:
    """A ``differs`` verdict with the cell's source and a guessed reason."""
    source = cell_source(cell)
    reason = guess_reason(source, original, rerun)
    return CellResult(
        index, "differs", diff=diff, source=source, reason=reason.to_json() if reason else None
    )


def compare_notebooks(
    original: Any,
    executed: Any,
    tolerance: float = 0.0,
    parameters: dict[str, Any] | None = None,
) -> Report:
    """Compare every code cell of ``original`` with its counterpart in ``executed``.

    Parameters
    ----------
    original, executed
        The notebook as stored and as it came back from the rerun.
    tolerance
        Relative tolerance for numbers in text outputs.
    parameters
        The parameters injected into the rerun: recorded in the report, with a warning for each
        cell that re-assigns one after the injection point (papermill's contract).

    Returns
    -------
    Report
        Cell-by-cell verdicts (``run_status`` is the caller's to set).
    """
    reran = [
        c
        for c in executed.get("cells", [])
        if "injected-parameters" not in c.get("metadata", {}).get("tags", [])
    ]
    by_id = {c.get("id"): c for c in reran if c.get("id")}
    report = Report(parameters=dict(parameters or {}))
    report.warnings = [w.to_json() for w in parameter_overrides(original, report.parameters)]
    for index, cell in enumerate(original.get("cells", [])):
        if cell.get("cell_type") != "code":
            continue
        counterpart = by_id.get(cell.get("id")) if cell.get("id") else None
        if counterpart is None and index < len(reran):
            counterpart = reran[index]
        report.cells.append(compare_cell(index, cell, counterpart, tolerance))
    return report
