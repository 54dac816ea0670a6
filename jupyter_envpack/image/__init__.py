"""Image: EnvSpec → Dockerfile + build context → an image built through the Docker Engine API.

The names below are imported on first use, so ``jupyter_envpack.image.engine`` (the engine's
address, asked by every CLI verb) does not import the docker SDK through ``build``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .build import BuildResult, build_image, prepare_context
    from .dockerfile import render_dockerfile
    from .options import BuildOptions

__all__ = ["BuildOptions", "BuildResult", "build_image", "prepare_context", "render_dockerfile"]
_MODULES = {
    "BuildOptions": "options",
    "BuildResult": "build",
    "build_image": "build",
    "prepare_context": "build",
    "render_dockerfile": "dockerfile",
}


def __getattr__(name: str) -> Any:
    """Import ``name`` from its module on first use (PEP 562)."""
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{_MODULES[name]}", __name__), name)
