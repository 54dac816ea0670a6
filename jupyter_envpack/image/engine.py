"""Connect to the Docker Engine: fast, clear failure when it is not there (RELIABILITY F1)."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from ..errors import EngineError

CONNECT_TIMEOUT = 5.0
CONTROL_TIMEOUT = 120.0

LABEL = "org.jupyter.envpack"
"""Every Docker object envpack creates carries ``LABEL=1`` and ``LABEL.kind``."""


def engine_address() -> str:
    """The engine's address from ``DOCKER_HOST`` with any credentials removed."""
    raw = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        parts = urlsplit(raw)
    except ValueError:
        return "<invalid DOCKER_HOST>"
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def connect(timeout: float = CONNECT_TIMEOUT) -> Any:
    """A ``docker.DockerClient`` for the configured engine, or :class:`EngineError` within ~5 s."""
    import docker

    where = engine_address()
    try:
        client = docker.from_env(timeout=int(max(1, timeout)))
        client.api.ping()
    except Exception as exc:
        detail = type(exc).__name__
        text = str(exc)
        if "Permission denied" in text:
            detail = "permission denied on the socket"
        elif "No such file" in text or "FileNotFoundError" in text:
            detail = "no socket there"
        elif "timed out" in text.lower() or "timeout" in detail.lower():
            detail = "connection timed out"
        elif "Connection refused" in text:
            detail = "connection refused"
        raise EngineError(
            f"Docker engine not reachable at {where} ({detail})",
            hint="start Docker (dockerd) or set DOCKER_HOST",
        ) from None
    client.api.timeout = CONTROL_TIMEOUT
    return client


def base_labels(kind: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The labels every envpack object of ``kind`` carries, plus the caller's."""
    labels = {LABEL: "1", f"{LABEL}.kind": kind}
    labels.update(extra or {})
    return labels
