"""Guess why a cell's output differs between the original and the rerun (issue 12.7).

A guess is a heuristic over the cell's source and its two raw (unsanitised) outputs; it names a
likely cause and what to do about it, and is shown beside the diff. It never changes a verdict.
The first matching rule wins, from the most specific evidence (the outputs) to the weakest (the
source merely reads a file).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_ADDR = re.compile(r"0x[0-9a-fA-F]{4,16}")
_NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
_WARNING = re.compile(r"\b\w*(?:Warning|deprecated)\b", re.IGNORECASE)
_RANDOM_USE = re.compile(
    r"\b(?:random\.\w+|np\.random\.\w+|numpy\.random\.\w+|torch\.(?:rand\w*|manual_seed)|"
    r"default_rng|shuffle|uuid[14])\s*\("
)
_SEED = re.compile(
    r"\b(?:seed|manual_seed|default_rng\s*\(\s*\d|random_state\s*=\s*\d|RandomState\s*\(\s*\d)"
)
_TIME_USE = re.compile(
    r"\b(?:datetime\.(?:now|today|utcnow)|date\.today|time\.(?:time|time_ns|ctime|localtime|"
    r"strftime|perf_counter|monotonic)|pd\.Timestamp\.now|Timestamp\.now|timezone\.now)\s*\("
)
_FILE_READ = re.compile(
    r"\b(?:open|read_csv|read_json|read_parquet|read_excel|read_table|read_text|read_bytes|"
    r"loadtxt|genfromtxt|np\.load|json\.load|pickle\.load|glob|listdir|scandir|iterdir|"
    r"urlopen|requests\.get)\s*\("
)


@dataclass(frozen=True)
class Reason:
    """A guessed cause of a difference: a stable ``code`` and a sentence for people."""

    code: str
    text: str

    def to_json(self) -> dict[str, str]:
        """The report's ``cells[].reason`` object."""
        return {"code": self.code, "text": self.text}


def _lines_reordered(a: str, b: str) -> bool:
    """Same lines or same comma-separated items, in another order."""
    if sorted(a.splitlines()) == sorted(b.splitlines()):
        return True
    split = re.compile(r"[\s,{}\[\]()]+")
    return sorted(split.split(a)) == sorted(split.split(b))


def _only_addresses(a: str, b: str) -> bool:
    return bool(_ADDR.search(a)) and _ADDR.sub("0x", a) == _ADDR.sub("0x", b)


def _last_digits(a: str, b: str) -> bool:
    """Same text but for floats that agree to ~9 significant digits."""
    if _NUMBER.sub("#", a) != _NUMBER.sub("#", b):
        return False
    pairs = list(zip(_NUMBER.findall(a), _NUMBER.findall(b), strict=True))
    return any(x != y for x, y in pairs) and all(
        math.isclose(float(x), float(y), rel_tol=1e-9, abs_tol=1e-12) for x, y in pairs
    )


def _new_warning(a: str, b: str) -> bool:
    return set(_WARNING.findall(a)) != set(_WARNING.findall(b))


def _unseeded(source: str) -> bool:
    return bool(_RANDOM_USE.search(source)) and not _SEED.search(source)


_Rule = Callable[[str, str, str], bool]
_RULES: list[tuple[_Rule, Reason]] = [
    (
        lambda s, a, b: _only_addresses(a, b),
        Reason(
            "memory-address",
            "Only memory addresses (0x…) differ: the output prints an object's default repr; "
            "give the class a __repr__ or print a value instead.",
        ),
    ),
    (
        lambda s, a, b: _last_digits(a, b),
        Reason(
            "float-last-digits",
            "Only the last digits of floating-point numbers differ (another BLAS, CPU or "
            "summation order); round the printed values or run with --tolerance 1e-9.",
        ),
    ),
    (
        lambda s, a, b: _new_warning(a, b),
        Reason(
            "warning-text",
            "A warning or deprecation message appears in only one run: a package version "
            "changed; pin it in the environment or filter the warning.",
        ),
    ),
    (
        lambda s, a, b: _unseeded(s),
        Reason(
            "unseeded-random",
            "The cell draws random numbers without a seed; seed the generator "
            "(random.seed, np.random.default_rng(0), torch.manual_seed).",
        ),
    ),
    (
        lambda s, a, b: bool(_TIME_USE.search(s)),
        Reason(
            "time-or-date",
            "The cell reads the clock or today's date; pass the date as a parameter "
            "or do not print it.",
        ),
    ),
    (
        lambda s, a, b: _lines_reordered(a, b),
        Reason(
            "ordering",
            "Same items in another order: set or dict ordering (hash randomisation) or "
            "file-listing order; sort before printing.",
        ),
    ),
    (
        lambda s, a, b: bool(_FILE_READ.search(s)),
        Reason(
            "file-read",
            "The cell reads a file or a URL whose content may have changed since the "
            "original run; ship the data with the notebook or pin its version.",
        ),
    ),
]


def guess_reason(source: str, original: str, rerun: str) -> Reason | None:
    """Guess why a cell's text output changed.

    Parameters
    ----------
    source
        The cell's source code.
    original, rerun
        The cell's text outputs, as stored and as the rerun produced them (not sanitised).

    Returns
    -------
    Reason or None
        The first rule that matches, or None when envpack cannot tell.
    """
    for matches, reason in _RULES:
        if matches(source, original, rerun):
            return reason
    return None


def cell_source(cell: Any, limit: int = 4000) -> str:
    """A cell's source as one string, capped at ``limit`` characters for the report."""
    value = cell.get("source", "")
    text = "".join(value) if isinstance(value, list) else str(value)
    return text if len(text) <= limit else text[:limit] + "\n…"
