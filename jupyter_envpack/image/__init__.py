"""Image: EnvSpec → Dockerfile + build context → an image built through the Docker Engine API."""

from __future__ import annotations

from .build import BuildResult, build_image, prepare_context
from .dockerfile import render_dockerfile
from .options import BuildOptions

__all__ = ["BuildOptions", "BuildResult", "build_image", "prepare_context", "render_dockerfile"]
