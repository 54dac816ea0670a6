"""nbval's cell markers and sanitizer files on top of envpack's report: one verdict per code cell.

The pytest plugin (:mod:`jupyter_envpack.pytest_plugin`) asks :func:`cell_options` what a cell
wants (skip it, ignore its output, expect an exception) and :func:`verdict` whether its
:class:`~jupyter_envpack.execute.compare.CellResult` passes. The markers are nbval's:

===========================  =======================  ======================================
comment                      cell tag                 effect
===========================  =======================  ======================================
``# NBVAL_IGNORE_OUTPUT``    ``nbval-ignore-output``  the cell must run; its output is ignored
``# NBVAL_CHECK_OUTPUT``     ``nbval-check-output``   compare the output (also in lax mode)
``# NBVAL_RAISES_EXCEPTION`` ``nbval-raises-exception``, ``raises-exception``: may raise
``# NBVAL_SKIP``             ``nbval-skip``           not executed, reported as skipped
===========================  =======================  ======================================
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError
from .execute.compare import CellResult, Report, compare_notebooks

_COMMENTS = {
    "NBVAL_IGNORE_OUTPUT": ("check", False),
    "PYTEST_VALIDATE_IGNORE_OUTPUT": ("check", False),
    "NBVAL_CHECK_OUTPUT": ("check", True),
    "NBVAL_RAISES_EXCEPTION": ("raises", True),
    "NBVAL_SKIP": ("skip", True),
}
_TAGS = {k.lower().replace("_", "-"): v for k, v in _COMMENTS.items()}
_TAGS["raises-exception"] = ("raises", True)
_SANITIZE_PAIR = re.compile(r"^regex: (.*)$\n^replace: (.*)$", re.MULTILINE)
MAX_SANITIZE_BYTES = 1 << 20


@dataclass(frozen=True)
class CellOptions:
    """What one code cell asks for: ``check`` its output, may ``raise``, ``skip`` it."""

    check: bool = True
    raises: bool = False
    skip: bool = False


def _source(cell: Any) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def cell_options(cell: Any, lax: bool = False) -> CellOptions:
    """The options of ``cell`` from its nbval tags, then its comments (comments win, as in nbval).

    In ``lax`` mode only cells marked ``NBVAL_CHECK_OUTPUT`` have their output compared.
    """
    found: dict[str, bool] = {"check": not lax}
    tags = cell.get("metadata", {}).get("tags", [])
    for tag in tags if isinstance(tags, list) else []:
        if tag in _TAGS:
            key, value = _TAGS[tag]
            found[key] = value
    for line in _source(cell).splitlines():
        comment = line.strip()
        if comment.startswith("#") and comment.lstrip("#").strip() in _COMMENTS:
            key, value = _COMMENTS[comment.lstrip("#").strip()]
            found[key] = value
    return CellOptions(**found)


def read_sanitize_file(path: str | Path) -> list[tuple[re.Pattern[str], str]]:
    """Parse an nbval sanitizer file: ``regex: …`` / ``replace: …`` line pairs (``[sections]``
    and other lines are ignored, as in nbval)."""
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            text = fh.read(MAX_SANITIZE_BYTES + 1).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"cannot read the sanitizer file {p}: {exc}",
            hint="give a UTF-8 text file of `regex:`/`replace:` line pairs",
        ) from None
    if len(text) > MAX_SANITIZE_BYTES:
        raise InputError(f"the sanitizer file {p} is larger than 1 MiB")
    pairs = []
    for regex, replace in _SANITIZE_PAIR.findall(text):
        try:
            pairs.append((re.compile(regex), replace))
        except re.error as exc:
            raise InputError(
                f"invalid regex {regex!r} in {p}: {exc}", hint="fix or remove that regex"
            ) from None
    return pairs


def _sanitize_value(value: Any, pairs: list[tuple[re.Pattern[str], str]]) -> Any:
    text = "".join(value) if isinstance(value, list) else value
    if not isinstance(text, str):
        return value
    for pattern, replace in pairs:
        text = pattern.sub(replace, text)
    return text


def sanitize_notebook(nb: Any, pairs: list[tuple[re.Pattern[str], str]]) -> Any:
    """A copy of ``nb`` whose text outputs went through ``pairs`` (nbval's ``re.sub`` order)."""
    out = copy.deepcopy(nb)
    if not pairs:
        return out
    for cell in out.get("cells", []):
        for output in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            if "text" in output:
                output["text"] = _sanitize_value(output["text"], pairs)
            for key in ("evalue",):
                if key in output:
                    output[key] = _sanitize_value(output[key], pairs)
            data = output.get("data", {})
            for mime in list(data):
                if mime.startswith("text/"):
                    data[mime] = _sanitize_value(data[mime], pairs)
    return out


def compare_sanitized(
    original: Any,
    executed: Any,
    pairs: list[tuple[re.Pattern[str], str]],
    tolerance: float = 0.0,
) -> Report:
    """envpack's :func:`compare_notebooks` after the user's sanitizers ran over both notebooks."""
    return compare_notebooks(
        sanitize_notebook(original, pairs), sanitize_notebook(executed, pairs), tolerance
    )


def blank_skipped_cells(nb: Any, lax: bool = False) -> Any:
    """A copy of ``nb`` where the cells marked skip have no code left (so they do not run)."""
    out = copy.deepcopy(nb)
    for cell in out.get("cells", []):
        if cell.get("cell_type") == "code" and cell_options(cell, lax).skip:
            cell["source"] = ""
    return out


def stored_error(cell: Any) -> str | None:
    """The ``ename`` of the first error output stored in ``cell``, if any."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return str(output.get("ename", ""))
    return None


def verdict(
    result: CellResult,
    options: CellOptions,
    check_images: bool = False,
    original_error: str | None = None,
) -> str | None:
    """``None`` when the cell passes, else the reason it fails (the diff follows separately).

    A cell marked to raise passes when it raises; when its output is checked and the stored
    notebook holds an error (``original_error``), the exception must have the same name (nbval).
    Image payloads count only with ``check_images`` (nbval ignores PNG/JPEG by default: the
    same plot often renders to different bytes).
    """
    if result.status in {"error", "new-error"}:
        if not options.raises:
            return f"the cell raised {result.ename}: {result.evalue}"
        if options.check and original_error is not None and original_error != result.ename:
            return f"the cell raised {result.ename}; the stored notebook has {original_error}"
        return None
    if result.status == "not-run":
        return "the rerun never reached this cell (an earlier cell timed out or the kernel died)"
    if result.status in {"same", "skipped"} or not options.check:
        return None
    if result.status == "image-differs":
        return "the cell's image output differs" if check_images else None
    return "the cell's output differs"
