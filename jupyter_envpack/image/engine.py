"""Connect to the container engine: fast, clear failure when it is not there (RELIABILITY F1).

The engine is Docker Engine or anything serving its API, such as Podman's
``podman system service``. Its address comes from :func:`use_engine` (``c.EnvPack.engine_url``,
``--engine-url``), else ``DOCKER_HOST``, else the default Docker socket.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from ..contract import LABEL
from ..errors import EngineError, InputError
from .dockerapi import engine_key

CONNECT_TIMEOUT = 5.0
CONTROL_TIMEOUT = 120.0

ENGINE_SCHEMES = ("unix", "tcp", "ssh", "npipe", "http", "https")


_engine_url: str | None = None
_kinds: dict[str, str] = {}


def use_engine(url: str | None) -> None:
    """Make ``url`` (``unix:///run/podman/podman.sock``, ``tcp://host:2376``…) the engine.

    ``None`` or ``""`` goes back to ``DOCKER_HOST`` / the default socket. Surfaces call this once
    with ``c.EnvPack.engine_url`` or ``--engine-url``; :func:`connect` then talks to it.
    """
    global _engine_url
    if url and urlsplit(url).scheme not in ENGINE_SCHEMES:
        raise InputError(
            f"cannot use engine URL {url!r}",
            hint="give e.g. unix:///run/podman/podman.sock or tcp://host:2376",
        )
    _engine_url = url or None


def engine_address() -> str:
    """The engine's address (see :func:`use_engine`) with any credentials removed."""
    raw = _engine_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        parts = urlsplit(raw)
    except ValueError:
        return "<invalid DOCKER_HOST>"
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


def engine_name(client: Any) -> str:
    """``podman`` when the engine API is served by Podman, else ``docker`` (reports name it)."""
    try:
        components = client.version().get("Components") or []
    except Exception:  # an engine that does not say is reported as docker
        return "docker"
    podman = any("podman" in str(c.get("Name", "")).lower() for c in components)
    return "podman" if podman else "docker"


def connect(timeout: float = CONNECT_TIMEOUT) -> Any:
    """A ``docker.DockerClient`` for the configured engine, or :class:`EngineError` within ~5 s."""
    import docker

    where = engine_address()
    try:
        if _engine_url:
            client = docker.DockerClient(base_url=_engine_url, timeout=int(max(1, timeout)))
        else:
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
            hint="start Docker (dockerd) or Podman's API service, or set c.EnvPack.engine_url",
        ) from None
    client.api.timeout = CONTROL_TIMEOUT
    return client


def base_labels(kind: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The labels every envpack object of ``kind`` carries, plus the caller's."""
    labels = {LABEL: "1", f"{LABEL}.kind": kind}
    labels.update(extra or {})
    return labels


def engine_kind(client: Any) -> str:
    """``"podman"`` when the engine is Podman's Docker-compatible service, else ``"docker"``.

    Podman names itself in ``/version`` (component ``Podman Engine``); the answer is cached per
    engine address.
    """
    key = engine_key(getattr(client, "api", None))
    if key not in _kinds:
        try:
            components = client.version().get("Components") or []
        except Exception:
            return "docker"
        names = " ".join(str(c.get("Name", "")) for c in components).lower()
        _kinds[key] = "podman" if "podman" in names else "docker"
    return _kinds[key]
