"""Request bodies and operation options: parsed strictly, validated, unknown fields refused.

Every failure is an ``InputError`` (400) naming the field; nothing here touches the disk.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import InputError

KERNEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,99}")
MAX_DEPTH = 32


def _reject_constant(name: str) -> Any:
    raise InputError(f"{name} is not valid JSON", hint="use null or a finite number")


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, dict):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level


def parse_json_object(body: bytes) -> dict[str, Any]:
    """Parse a request body that must be one JSON object (no NaN/Infinity, bounded nesting)."""
    try:
        value = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except InputError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InputError("the request body is not valid JSON") from None
    if not isinstance(value, dict):
        raise InputError("the request body must be a JSON object")
    if _depth(value) > MAX_DEPTH:
        raise InputError("the request body is nested too deeply")
    return value


@dataclass(frozen=True)
class Field:
    """One allowed field: accepted JSON types and an optional extra check."""

    types: tuple[type, ...]
    check: Callable[[Any], bool] | None = None
    hint: str | None = None


def _number(low: float, high: float) -> Field:
    def check(v: Any) -> bool:
        return not isinstance(v, bool) and math.isfinite(v) and low <= v <= high

    return Field((int, float), check, f"a number from {low:g} to {high:g}")


def _pattern(regex: re.Pattern[str], hint: str) -> Field:
    return Field((str,), lambda v: regex.fullmatch(v) is not None, hint)


def _parameters(value: Any) -> bool:
    return len(value) <= 200 and all(isinstance(k, str) and IDENT_RE.fullmatch(k) for k in value)


def _memory(value: Any) -> bool:
    from ..execute.limits import parse_memory  # the one grammar (lazy: ``execute`` is heavy)

    try:
        return parse_memory(value, minimum=4 * 2**20) <= 1 << 40
    except InputError:
        return False


def _image(value: Any) -> bool:
    from ..image.refs import validate_reference

    try:
        validate_reference(value)
    except InputError:
        return False
    return True


def _api_path(value: Any) -> bool:
    return len(value) > 0  # its shape is checked by server.paths (404, like the Contents API)


DATE_RE = re.compile(r"(19|20)[0-9]{2}-[01][0-9]-[0-3][0-9]")


def _date(value: Any) -> bool:
    from datetime import date

    try:
        return DATE_RE.fullmatch(value) is not None and date.fromisoformat(value) is not None
    except ValueError:
        return False


RECONSTRUCT_FIELDS: dict[str, Field] = {
    "reconstruct": Field((bool,)),
    "as_of": Field((str,), _date, "a date YYYY-MM-DD (with reconstruct)"),
}
"""Reconstruct the environment instead of snapshotting the kernel's (issue 13.2)."""


def _gpus(value: Any) -> bool:
    from ..errors import InputError
    from ..gpu import parse_gpus

    try:
        parse_gpus(value)
    except InputError:
        return False
    return not isinstance(value, bool)


BUILD_FIELDS: dict[str, Field] = {
    **RECONSTRUCT_FIELDS,
    "base_image": Field((str,), _image, "an image reference such as python:3.11-slim"),
    "kernel": _pattern(KERNEL_RE, "a kernelspec name"),
    "deadline": _number(1, 86400),
    "idle_timeout": _number(1, 86400),
}
RUN_FIELDS: dict[str, Field] = {
    **RECONSTRUCT_FIELDS,
    "base_image": BUILD_FIELDS["base_image"],
    "kernel": BUILD_FIELDS["kernel"],
    "build_deadline": _number(1, 86400),
    "idle_timeout": _number(1, 86400),
    "image": Field((str,), _image, "an image reference (skips the build)"),
    "engine": Field((str,), lambda v: v in ("docker", "venv"), "docker or venv"),
    "parameters": Field((dict,), _parameters, "an object whose keys are Python identifiers"),
    "cell_timeout": _number(1, 86400),
    "deadline": _number(1, 7 * 86400),
    "mem_limit": Field((str, int), _memory, "bytes, or a number with k/m/g (512m, 2g, 1Gi)"),
    "cpus": _number(0.01, 1024),
    "pids": _number(16, 1_000_000),
    "gpus": Field((str, int), _gpus, "a number of GPUs or 'all'"),
    "network": Field((bool,)),
    "tolerance": _number(0, 1),
    "output": Field((str,), _api_path, "a notebook path relative to the server root"),
    # issue 14: {"alpha": "0.1,0.2", "seed": "1..3"}, the CLI's --sweep grammar per parameter
    "sweep": Field((dict,), _parameters, 'an object: parameter name → values like "1,2" or "1..3"'),
    "max_parallel": _number(1, 16),
}


def _strings(value: Any) -> bool:
    return all(isinstance(v, str) for v in value)


_TEXT = Field((str,))
_JOB_TEXT: tuple[str, ...] = (
    "backend",
    "registry",
    "schedule",
    "timezone",
    "namespace",
    "context",
    "output",
)
_JOB_TEXT += ("kernel", "partition", "account", "runtime")
JOB_FIELDS: dict[str, Field] = {
    **{name: _TEXT for name in _JOB_TEXT},
    "base_image": BUILD_FIELDS["base_image"],
    "image": RUN_FIELDS["image"],
    "parameters": RUN_FIELDS["parameters"],
    "cell_timeout": _number(1, 86400),
    "deadline": _number(1, 7 * 86400),
    "cpu": _number(0.001, 1024),
    "cpu_request": _number(0.001, 1024),
    "gpus": _number(0, 64),
    "memory": Field((str, int), hint="bytes or a size like 2g"),
    "memory_request": Field((str, int), hint="bytes or a size like 2g"),
    "constraints": Field((list,), _strings, "a list of strings"),
    "image_pull_secrets": Field((list,), _strings, "a list of strings"),
    "wait": Field((bool,)),
}
"""``job`` operation options (``cluster/operation.py``; the cluster backends check the rest)."""
BINDER_FIELDS: dict[str, Field] = {
    "path": Field((str,), _api_path, "a notebook path relative to the server root"),
    "kernel": Field((str,), hint="a kernelspec name"),
}
REQUEST_FIELDS: dict[str, Field] = {
    "kind": Field((str,), lambda v: 0 < len(v) <= 32),
    "path": Field((str,), _api_path, "a notebook path relative to the server root"),
    "options": Field((dict,)),
}


def check_fields(
    value: dict[str, Any], fields: dict[str, Field], what: str, required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Return ``value`` with null fields dropped, or raise ``InputError`` naming the bad field."""
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise InputError(
            f"unknown {what} field(s): {', '.join(repr(u)[:40] for u in unknown[:5])}",
            hint=f"allowed: {', '.join(sorted(fields))}",
        )
    for name in required:
        if value.get(name) is None:
            raise InputError(f"{what} field {name!r} is required")
    out: dict[str, Any] = {}
    for name, item in value.items():
        if item is None:
            continue
        spec = fields[name]
        ok = isinstance(item, spec.types) and not (
            isinstance(item, bool) and bool not in spec.types
        )
        if not ok or (spec.check is not None and not spec.check(item)):
            hint = spec.hint or f"expected {' or '.join(t.__name__ for t in spec.types)}"
            raise InputError(f"invalid {what} field {name!r}", hint=hint)
        out[name] = item
    return out


def validator(fields: dict[str, Field], what: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Return a ``Kind.validate`` callable checking options against ``fields``."""
    return lambda options: check_fields(options, fields, what)


def kernel_name(config: Any, kernel: str | None) -> str | None:
    """The kernel to probe: ``kernel`` when valid (400 otherwise), else ``c.EnvPack.kernel``."""
    if kernel is not None and not KERNEL_RE.fullmatch(kernel):
        raise InputError("invalid kernel name", hint="a kernelspec name")
    return kernel or getattr(config, "kernel", None)


def parse_operation_request(body: bytes) -> tuple[str, str, dict[str, Any]]:
    """Parse ``POST /envpack/operations``: return ``(kind, path, options)``."""
    value = check_fields(
        parse_json_object(body), REQUEST_FIELDS, "request", required=("kind", "path")
    )
    return value["kind"], value["path"], value.get("options", {})
