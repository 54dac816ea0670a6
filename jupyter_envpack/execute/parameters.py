"""Papermill-style parameters: validated names, JSON values, one generated cell (RELIABILITY H7)."""

from __future__ import annotations

import ast
import json
import keyword
import math
import unicodedata
from dataclasses import dataclass
from typing import Any

from ..errors import InputError
from ..snapshot.notebook import cell_source, python_source

MAX_VALUE_BYTES = 256 * 1024
MAX_PARAMETERS = 200


def _check_value(name: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"parameter {name!r} is not a finite number")
    if isinstance(value, dict | list):
        for v in value.values() if isinstance(value, dict) else value:
            _check_value(name, v)
    elif value is not None and not isinstance(value, str | int | float | bool):
        raise InputError(
            f"parameter {name!r} has a value that is not JSON ({type(value).__name__})"
        )


def valid_name(name: object) -> bool:
    """A Python identifier, not a keyword, and NFKC-normal: Python normalises identifiers when it
    parses them, so ``ª = 1`` would assign ``a`` (another variable than the one named)."""
    return (
        isinstance(name, str)
        and name.isidentifier()
        and not keyword.iskeyword(name)
        and unicodedata.normalize("NFKC", name) == name
    )


def validate_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """Return ``params`` when every name is an identifier and every value plain JSON."""
    if not isinstance(params, dict):
        raise InputError("parameters must be an object of name → value")
    if len(params) > MAX_PARAMETERS:
        raise InputError(f"too many parameters ({len(params)} > {MAX_PARAMETERS})")
    for name, value in params.items():
        if not valid_name(name):
            raise InputError(
                f"invalid parameter name {name!r}",
                hint="names must be Python identifiers in NFKC normal form, and not keywords",
            )
        _check_value(name, value)
        if len(json.dumps(value)) > MAX_VALUE_BYTES:
            raise InputError(f"parameter {name!r} is larger than {MAX_VALUE_BYTES // 1024} KiB")
    return params


def parameters_cell_source(params: dict[str, Any]) -> str:
    """Source of the injected cell: one ``name = <literal>`` per parameter, checked by ``ast``."""
    validate_parameters(params)
    lines = ["# Parameters injected by jupyter-envpack"]
    lines += [f"{name} = {value!r}" for name, value in params.items()]
    source = "\n".join(lines) + "\n"
    tree = ast.parse(source)
    for node in tree.body:
        if not (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            raise InputError("parameters did not produce plain assignments")
        try:
            ast.literal_eval(node.value)
        except ValueError:
            raise InputError("parameters did not produce literal values") from None
    return source


def parse_cli_parameters(pairs: list[list[str]] | list[tuple[str, str]] | None) -> dict[str, Any]:
    """``-p NAME VALUE`` pairs → dict; a value that parses as JSON is that value, else the string."""
    out: dict[str, Any] = {}
    for name, raw in pairs or []:
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        out[name] = value
    return validate_parameters(out)


PARAMETERS_TAG = "parameters"


@dataclass(frozen=True)
class ParameterOverride:
    """A code cell that runs after the injected parameters and assigns some of their names."""

    index: int
    names: tuple[str, ...]
    tagged: bool

    def to_json(self) -> dict[str, Any]:
        """The report's ``warnings`` entry (``envpack.report/1``, added field)."""
        cell = f"cell {self.index + 1}"
        names = ", ".join(self.names)
        fix = (
            f"tag {cell} `parameters` so the values are injected after it (papermill's contract)"
            if not self.tagged
            else f"remove the assignment from {cell}, or move it into the `parameters` cell"
        )
        return {
            "code": "parameters-overridden",
            "cell": self.index,
            "names": list(self.names),
            "message": f"{cell} assigns {names} after the injected parameters: "
            "the run used the notebook's own value",
            "hint": fix,
        }


def injection_index(nb: Any) -> int:
    """Position of the injected cell: after the first cell tagged ``parameters``, else first."""
    for i, cell in enumerate(nb.get("cells", [])):
        if PARAMETERS_TAG in (cell.get("metadata") or {}).get("tags", []):
            return i + 1
    return 0


def assigned_names(source: str) -> set[str]:
    """Names a cell binds at top level (``x = …``, ``x: int = …``, ``a, b = …``)."""
    try:
        tree = ast.parse(python_source(source))
    except (SyntaxError, ValueError):
        return set()
    names: set[str] = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, ast.AnnAssign) and node.value is not None:
            targets = [node.target]
        for target in targets:
            names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return names


def parameter_overrides(nb: Any, params: dict[str, Any]) -> list[ParameterOverride]:
    """Code cells after the injection point that re-assign a parameter (silently winning)."""
    if not params:
        return []
    at = injection_index(nb)
    out = []
    for index, cell in enumerate(nb.get("cells", [])[at:], start=at):
        if cell.get("cell_type") != "code":
            continue
        names = tuple(sorted(assigned_names(cell_source(cell)) & set(params)))
        if names:
            out.append(ParameterOverride(index, names, tagged=at > 0))
    return out
