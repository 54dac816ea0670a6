"""BuildOptions: what a build may vary besides the snapshot."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..defaults import BUILD_DEADLINE, IDLE_TIMEOUT, LAYOUTS
from ..errors import InputError
from .refs import validate_reference

UV_VERSION = "0.9.7"
"""The uv release used inside images (pinned: builds are reproducible)."""


@dataclass
class BuildOptions:
    """Options of one build.

    Parameters
    ----------
    base_image
        Base image reference; default ``python:X.Y-slim`` for the kernel's Python.
    ca_bundle
        A CA bundle for reaching package indexes (host side only; never copied into the image).
    index_url, extra_index_urls
        Package indexes; default: whatever the user's pip is configured with.
    labels
        Extra labels for the image (e.g. the server's operation id); not part of the tag.
    deadline
        Overall build time limit in seconds.
    idle_timeout
        Fail when the engine sends nothing for this many seconds.
    no_cache
        Rebuild every layer even when the image or its layers exist.
    wheels_via
        ``serve`` the host's wheelhouse to the build over the Docker bridge (one layer, no copy of
        the wheels; needs a local engine), ``copy`` the wheels into the context (works with any
        engine), or ``auto`` (serve when the engine is local).
    layers
        ``single`` (default): the environment in one layer, installed by one uv process (the
        fastest cold build); ``shared``: with served wheels, each heavy distribution (wheel >= 4
        MiB) gets a layer of its own in an order sibling notebooks share (:mod:`.layers`) — a
        slower first build, smaller pushes and pulls of siblings.
    base_image_id
        Set by the build when the base image has no registry digest: its image id, recorded in
        the labels (``org.jupyter.envpack.base.id``).
    lock_hashes
        sha256 hashes per distribution from the notebook's lock file (``NB.envpack.lock``): a
        fetched wheel with another hash fails the build (``hash-mismatch``).
    """

    base_image: str | None = None
    ca_bundle: str | None = None
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    deadline: float = BUILD_DEADLINE
    idle_timeout: float = IDLE_TIMEOUT
    no_cache: bool = False
    wheels_via: str = "auto"
    layers: str = LAYOUTS[0]
    base_image_id: str | None = None
    lock_hashes: dict[str, list[str]] = field(default_factory=dict)

    def resolved_base_image(self, python_minor: str) -> str:
        """The base image to use for a kernel running Python ``python_minor``."""
        ref = self.base_image if self.base_image is not None else f"python:{python_minor}-slim"
        return validate_reference(ref, "base image")

    def validate(self) -> None:
        """Raise :class:`InputError` for an option that cannot work."""
        if self.base_image is not None:
            validate_reference(self.base_image, "base image")
        if self.ca_bundle and not Path(self.ca_bundle).is_file():
            raise InputError(
                f"CA bundle not found: {self.ca_bundle}", hint="give the path of a PEM file"
            )
        for url in (self.index_url, *self.extra_index_urls):
            if url is not None and ("\n" in url or not url.strip()):
                raise InputError("invalid package index URL")
        if self.wheels_via not in {"auto", "serve", "copy"}:
            raise InputError(f"wheels_via must be auto, serve or copy, not {self.wheels_via!r}")
        if self.layers not in LAYOUTS:
            raise InputError(f"layers must be {' or '.join(LAYOUTS)}, not {self.layers!r}")
        if self.deadline <= 0 or self.idle_timeout <= 0:
            raise InputError("deadline and idle timeout must be positive")
        for key, value in self.labels.items():
            if "\n" in key or "\n" in value:
                raise InputError(f"invalid label {key!r}")
