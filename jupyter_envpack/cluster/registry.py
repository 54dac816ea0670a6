"""Push a content-addressed envpack image to a registry a cluster can pull from.

docker-py does not raise when a push fails: the daemon reports errors *inside* the JSON stream
(``error``/``errorDetail``). :func:`push_image` reads every line, turns such lines into a
:class:`~jupyter_envpack.errors.RegistryError`, and counts which layers were uploaded and which the
registry already had, so a second push of an unchanged image is seen to upload nothing.

Credentials come from the user's docker config (docker-py reads ``~/.docker/config.json`` and its
credential helpers) or from explicit :class:`RegistryAuth`; they are never logged, and every
message that leaves this module goes through :func:`sanitize`.
"""

from __future__ import annotations

import base64
import contextlib
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import CancelledError, InputError, RegistryError
from ..events import CancelToken, ProgressEvent, Reporter, null_reporter

_DOMAIN_PART = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = rf"(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*|\[[0-9a-fA-F:.]+\])(?::[0-9]{{1,5}})?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REGISTRY_RE = re.compile(rf"{_HOST}(?:/{_PATH_COMPONENT})*")
REPOSITORY_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_USERINFO_RE = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")
_AUTH_FIELD_RE = re.compile(
    r'(?i)("?(?:password|auth|identitytoken|registrytoken)"?\s*[:=]\s*)'
    r'("[^"]*"|\S+)'
)


@dataclass(frozen=True)
class RegistryAuth:
    """Explicit registry credentials (otherwise the docker config is used)."""

    username: str
    password: str = field(repr=False)

    def secrets(self) -> list[str]:
        """Every form in which these credentials could show up in a message."""
        pair = f"{self.username}:{self.password}".encode()
        return [s for s in (self.password, base64.b64encode(pair).decode()) if s]

    def to_auth_config(self) -> dict[str, str]:
        """The ``auth_config`` dict docker-py sends in the ``X-Registry-Auth`` header."""
        return {"username": self.username, "password": self.password}


@dataclass(frozen=True)
class PushResult:
    """What a push did.

    Parameters
    ----------
    reference
        The pushed ``<registry>/<repository>:<tag>``.
    digest
        The manifest digest the registry reported (``sha256:…``), when it did.
    pushed, existing
        Layer ids uploaded by this push, and those the registry already had (or mounted).
    """

    reference: str
    digest: str | None
    pushed: tuple[str, ...]
    existing: tuple[str, ...]

    @property
    def uploaded_nothing(self) -> bool:
        """Whether the registry already had every layer (a resubmitted unchanged image)."""
        return not self.pushed

    def to_json(self) -> dict[str, Any]:
        """Return the result as a JSON-ready dict."""
        return {
            "reference": self.reference,
            "digest": self.digest,
            "pushed": list(self.pushed),
            "existing": list(self.existing),
        }


def sanitize(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove passwords, encoded auth and URL user-info from ``text``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _USERINFO_RE.sub(r"\1***@", text)
    return _AUTH_FIELD_RE.sub(r"\1***", text)


def validate_registry(registry: str) -> str:
    """Return ``registry`` (``host[:port][/namespace]``) when it is a valid reference prefix."""
    registry = registry.rstrip("/") if registry else ""
    if registry.startswith(("http://", "https://")):
        raise InputError(
            f"registry {sanitize(registry)!r} must not carry a scheme",
            hint="write host[:port], e.g. 127.0.0.1:5000",
        )
    if not registry or len(registry) > 255 or not REGISTRY_RE.fullmatch(registry):
        raise InputError(
            f"invalid registry address {sanitize(registry)!r}",
            hint="write host[:port][/namespace], e.g. 127.0.0.1:5000",
        )
    return registry


def split_image(image: str) -> tuple[str, str]:
    """Split a local ``repository:tag`` (``envpack/<slug>:<hash20>``) into its two parts."""
    repository, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        raise InputError(f"image {image!r} has no tag", hint="push images built by envpack")
    if not REPOSITORY_RE.fullmatch(repository) or len(repository) > 255:
        raise InputError(
            f"invalid repository {repository!r}",
            hint="lowercase letters, digits and . _ - separators",
        )
    if not TAG_RE.fullmatch(tag):
        raise InputError(f"invalid tag {tag!r}", hint="at most 128 of [A-Za-z0-9_.-]")
    return repository, tag


def target_reference(image: str, registry: str) -> tuple[str, str]:
    """Return (``<registry>/<repository>``, tag) for pushing local ``image`` to ``registry``."""
    repository, tag = split_image(image)
    return f"{validate_registry(registry)}/{repository}", tag


def _error_hint(message: str, registry: str) -> str:
    low = message.lower()
    if "unauthorized" in low or "authentication required" in low or "denied" in low:
        return (
            f"log in with `docker login {registry}` or pass registry credentials; "
            "check that the account may push to this repository"
        )
    if "connection refused" in low or "no such host" in low or "i/o timeout" in low:
        return f"is a registry listening at {registry}? check the address and port"
    if "http response to https client" in low or "x509" in low or "certificate" in low:
        return (
            "the registry's TLS does not match the daemon's settings: add it to the "
            "daemon's insecure-registries (loopback only) or install its CA certificate"
        )
    return "see the registry's and the Docker daemon's logs"


class _PushTally:
    """Follows the push stream: layer states, digest, in-band errors."""

    def __init__(self, reporter: Reporter, secrets: list[str]) -> None:
        self.reporter = reporter
        self.secrets = secrets
        self.layers: dict[str, str] = {}
        self.digest: str | None = None

    def feed(self, line: dict[str, Any], registry: str) -> None:
        if "error" in line or "errorDetail" in line:
            detail = line.get("errorDetail") or {}
            raw = str(detail.get("message") or line.get("error") or "unknown error")
            message = sanitize(raw, self.secrets)
            raise RegistryError(
                f"push to {registry} failed: {message}", hint=_error_hint(message, registry)
            )
        status, layer = str(line.get("status", "")), line.get("id")
        aux = line.get("aux") or {}
        if aux.get("Digest"):
            self.digest = str(aux["Digest"])
        done = status in {"Pushed", "Layer already exists"} or status.startswith("Mounted from")
        if layer and done:
            self.layers[str(layer)] = status
        if status and status not in {"Pushing", "Waiting", "Preparing"}:
            text = f"{layer}: {status}" if layer else status
            self.reporter(ProgressEvent("push", sanitize(text, self.secrets), "log"))

    def result(self, reference: str) -> PushResult:
        pushed = tuple(k for k, v in self.layers.items() if v == "Pushed")
        existing = tuple(k for k, v in self.layers.items() if v != "Pushed")
        return PushResult(reference, self.digest, pushed, existing)


def _stream(client: Any, repository: str, tag: str, auth: RegistryAuth | None) -> Iterator[Any]:
    kwargs: dict[str, Any] = {"tag": tag, "stream": True, "decode": True}
    if auth is not None:
        kwargs["auth_config"] = auth.to_auth_config()
    result: Iterator[Any] = client.api.push(repository, **kwargs)
    return result


def _has_image(client: Any, reference: str) -> bool:
    try:
        client.api.inspect_image(reference)
    except Exception:  # not there (or the engine will say so on the next call)
        return False
    return True


def _untag(client: Any, reference: str, keep: bool) -> None:
    """A failed push leaves no new registry tag behind (the local image itself stays)."""
    if not keep:
        with contextlib.suppress(Exception):
            client.api.remove_image(reference, noprune=True)


def _follow_push(
    client: Any,
    repository: str,
    tag: str,
    auth: RegistryAuth | None,
    tally: _PushTally,
    cancel: CancelToken,
    end: float,
    registry: str,
) -> None:
    stream = _stream(client, repository, tag, auth)
    try:
        for line in stream:
            if cancel.cancelled:
                raise CancelledError(f"push of {repository}:{tag} cancelled")
            if time.monotonic() > end:
                raise RegistryError(
                    f"push to {registry} took too long", hint="check the network to the registry"
                )
            tally.feed(line if isinstance(line, dict) else {}, registry)
    finally:
        close = getattr(stream, "close", None)
        if close:
            close()


def _engine_error(exc: Exception, registry: str, secrets: list[str]) -> RegistryError:
    import docker.errors

    if isinstance(exc, docker.errors.APIError):
        message = sanitize(str(exc.explanation or exc), secrets)
        return RegistryError(
            f"push to {registry} failed: {message}", hint=_error_hint(message, registry)
        )
    if isinstance(exc, docker.errors.DockerException):
        return RegistryError(
            f"push to {registry} failed: {sanitize(str(exc), secrets)}",
            hint="is the Docker engine running?",
        )
    return RegistryError(
        f"the connection to the Docker engine broke during the push to "
        f"{registry} ({type(exc).__name__})",
        hint="push again: layers already uploaded are skipped",
    )


def push_image(
    image: str,
    registry: str,
    *,
    auth: RegistryAuth | None = None,
    client: Any = None,
    reporter: Reporter = null_reporter,
    cancel: CancelToken | None = None,
    deadline: float = 1800.0,
) -> PushResult:
    """Tag local ``image`` as ``<registry>/<repository>:<tag>`` and push it.

    Parameters
    ----------
    image
        A local image such as ``envpack/analysis:0123456789abcdef0123``.
    registry
        ``host[:port][/namespace]``; plain HTTP works only where the daemon allows it (loopback).
    auth
        Explicit credentials; ``None`` uses the docker config of the user running the daemon client.
    deadline
        Seconds the whole push may take.

    Raises
    ------
    RegistryError
        The daemon or the registry refused (message sanitised, with a hint); the local image is
        kept, so a retry only uploads what is missing.
    """
    import docker.errors
    import requests.exceptions

    repository, tag = target_reference(image, registry)
    reference = f"{repository}:{tag}"
    secrets = auth.secrets() if auth else []
    if client is None:
        from ..image.engine import connect  # the core's engine connection (lazy: core loads late)

        client = connect()
    tally = _PushTally(reporter, secrets)
    reporter(ProgressEvent("push", f"pushing {reference}", "step"))
    tagged_before = _has_image(client, reference)
    try:
        client.api.tag(image, repository, tag)
        _follow_push(
            client,
            repository,
            tag,
            auth,
            tally,
            cancel or CancelToken(),
            time.monotonic() + deadline,
            registry,
        )
    except docker.errors.ImageNotFound:
        raise RegistryError(
            f"image {image} is not in the local engine",
            hint="build it first with `jupyter envpack build`",
        ) from None
    except (RegistryError, CancelledError):
        _untag(client, reference, tagged_before)
        raise
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        _untag(client, reference, tagged_before)
        raise _engine_error(exc, registry, secrets) from None
    result = tally.result(reference)
    summary = f"{len(result.pushed)} layer(s) uploaded, {len(result.existing)} already there"
    reporter(ProgressEvent("push", f"pushed {reference}: {summary}", "info", 1.0))
    return result
