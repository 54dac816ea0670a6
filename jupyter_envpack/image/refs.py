"""Validate Docker image references with a full match of the reference grammar (RELIABILITY D6, G4).

docker-py's own ``match_tag`` accepts a trailing newline; these patterns end in ``\\Z``.
"""

from __future__ import annotations

import re

from ..errors import InputError

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?)"
_NAME = rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
REFERENCE = re.compile(rf"(?P<name>{_NAME})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?\Z")


def validate_reference(ref: str, what: str = "image reference") -> str:
    """Return ``ref`` when it is a valid image reference, else raise :class:`InputError`."""
    if not isinstance(ref, str) or len(ref) > 512 or not REFERENCE.match(ref):
        raise InputError(
            f"invalid {what}: {ref!r}",
            hint="use the form [registry/]name[:tag][@sha256:digest], lowercase name",
        )
    name = REFERENCE.match(ref).group("name")  # type: ignore[union-attr]
    if "/" not in name and ":" in name:  # pragma: no cover - excluded by the grammar
        raise InputError(f"invalid {what}: {ref!r}")
    return ref


def split_reference(ref: str) -> tuple[str, str | None]:
    """``(repository, tag)`` of a validated reference (tag None when absent)."""
    m = REFERENCE.match(validate_reference(ref))
    assert m is not None
    return m.group("name"), m.group("tag")


def slug(text: str, limit: int = 40) -> str:
    """A lowercase repository component derived from free text (file names)."""
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    s = re.sub(r"-{2,}", "-", s)[:limit].strip("-")
    return s or "notebook"
