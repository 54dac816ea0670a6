"""Papermill-style parameters: validated names, JSON values, one generated cell (RELIABILITY H7)."""

from __future__ import annotations

import ast
import json
import keyword
import math
from typing import Any

from ..errors import InputError

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


def validate_parameters(params: dict[str, Any]) -> dict[str, Any]:
    """Return ``params`` when every name is an identifier and every value plain JSON."""
    if not isinstance(params, dict):
        raise InputError("parameters must be an object of name → value")
    if len(params) > MAX_PARAMETERS:
        raise InputError(f"too many parameters ({len(params)} > {MAX_PARAMETERS})")
    for name, value in params.items():
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise InputError(
                f"invalid parameter name {name!r}",
                hint="names must be Python identifiers and not keywords",
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
