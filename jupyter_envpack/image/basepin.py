"""Pin the base image by its registry digest (issue 13.3).

``FROM name:tag@sha256:…`` when the engine knows a registry digest (``RepoDigests``) of the base
image; otherwise the image id is recorded in the labels with a warning that others cannot pull it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .refs import REFERENCE, split_reference, validate_reference

_DOCKER_HUB = ("docker.io/library/", "docker.io/", "index.docker.io/library/", "index.docker.io/")


@dataclass(frozen=True)
class PinnedBase:
    """The base image as the Dockerfile names it, its registry digest or else its image id."""

    ref: str
    digest: str | None = None
    image_id: str | None = None

    @property
    def warning(self) -> str | None:
        """Why others may not get the same base image (None when pinned by digest)."""
        if self.digest or not self.image_id:
            return None
        return (
            f"the base image {self.ref} has no registry digest (built or imported locally): "
            f"recorded by image id {self.image_id[:19]}, others cannot pull it; push it to a "
            "registry and use --base-image name@sha256:… to share the image's recipe"
        )


def _repository(name: str) -> str:
    for prefix in _DOCKER_HUB:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def pin_base_image(client: Any, ref: str) -> PinnedBase:
    """Resolve ``ref`` on the engine to a :class:`PinnedBase` (unchanged when not on the engine)."""
    validate_reference(ref, "base image")
    given = REFERENCE.match(ref)
    if given is not None and given.group("digest"):
        return PinnedBase(ref, given.group("digest"))
    try:
        attrs = client.api.inspect_image(ref)
    except Exception:  # not on this machine (the build pulls it) or the engine refused
        return PinnedBase(ref)
    repo = _repository(split_reference(ref)[0])
    for entry in attrs.get("RepoDigests") or []:
        name, _, digest = str(entry).partition("@")
        if _repository(name) == repo and digest:
            return PinnedBase(validate_reference(f"{ref}@{digest}", "base image"), digest)
    return PinnedBase(ref, None, str(attrs.get("Id") or "") or None)
