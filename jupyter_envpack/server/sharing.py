"""Blocking helpers behind ``/envpack/binder`` and the ``backends`` part of ``/envpack/status``.

Kept free of tornado (the handlers run these in the service's thread pool). Paths go through the
contents root's policy (:class:`~jupyter_envpack.server.paths.ContentsPaths`) before anything is
read; nothing returned holds a server path.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..operations import scrub_path
from .paths import ContentsPaths

log = logging.getLogger(__name__)
TRUE = ("1", "true", "yes", "on")


def flag(value: str | None) -> bool:
    """A boolean query argument (``1``/``true``/``yes``/``on``; absent or anything else: false)."""
    return value is not None and value.strip().lower() in TRUE


def _scrub(value: Any, root: str) -> Any:
    if isinstance(value, str):
        return scrub_path(value, root)
    if isinstance(value, list):
        return [_scrub(v, root) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v, root) for k, v in value.items()}
    return value


def binder_json(
    paths: ContentsPaths,
    api_path: str,
    *,
    kernel: str | None = None,
    host: str | None = None,
    ref: str | None = None,
    branch: bool = False,
    snapshot: bool = True,
) -> dict[str, Any]:
    """``GET /envpack/binder``: :func:`jupyter_envpack.share.binder.binder_info` of a notebook."""
    from ..share.binder import binder_info

    notebook = paths.notebook(api_path)
    info = binder_info(
        notebook,
        kernel=kernel,
        host=host or None,
        ref=ref or None,
        branch=branch,
        snapshot=snapshot,
    )
    info["path"] = api_path
    return dict(_scrub(info, paths.root_dir))


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def write_binder_json(
    paths: ContentsPaths, api_path: str, *, kernel: str | None = None
) -> dict[str, Any]:
    """``POST /envpack/binder``: write the ``binder/`` folder of a notebook's repository.

    The folder goes to the git work tree's root (the notebook's folder outside git), which must
    be inside the contents root: a server started below the repository's root may not write
    above it (400). Returned paths are API paths (relative to the contents root).
    """
    from ..share.binder import write_binder
    from ..share.gitrepo import find_root

    notebook = paths.notebook(api_path)
    root = Path(os.path.realpath(paths.root_dir))
    repo = find_root(notebook.parent)
    target = Path(os.path.realpath(repo)) if repo is not None else notebook.parent
    if not _inside(target, root):
        raise InputError(
            "the notebook's git repository starts above the server's root, so "
            "binder/ cannot be written from here",
            hint="start Jupyter at the repository's root, or run "
            "`jupyter envpack binder NOTEBOOK --write` in a terminal",
        )
    result = write_binder(notebook, kernel=kernel)
    base = target.relative_to(root).as_posix()

    def api(rel: str) -> str:
        return rel if base == "." else f"{base}/{rel}"

    return {
        "folder": api(result["folder"]),
        "written": [api(p) for p in result["written"]],
        "removed": [api(p) for p in result["removed"]],
        "files": result["files"],
        "path": api_path,
    }


def backends_json(config: Any, kinds: list[str]) -> dict[str, Any]:
    """The cluster backends jobs can use from this server (``{}`` without the ``job`` kind).

    Never raises: a failure is reported as every backend unavailable, with the reason.
    """
    if "job" not in kinds:
        return {}
    client = None
    try:
        from ..cluster import backend_availability
        from .kinds import docker_client

        with contextlib.suppress(Exception):  # down: the swarm check says so itself
            client = docker_client()
        return dict(backend_availability(config, client))
    except Exception as exc:  # status must answer even when the cluster code cannot
        log.warning("envpack: cluster backend availability failed: %r", exc)
        names = list(getattr(config, "cluster_backends", {}) or {}) or ["swarm", "kubernetes"]
        reason = f"could not check the cluster backends ({type(exc).__name__})"
        return {
            name: {"available": False, "reason": reason, "hint": "see the server log"}
            for name in names
        }
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
