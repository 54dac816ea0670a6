"""``jupyter envpack lock NB``: write ``<stem>.envpack.lock`` beside the notebook.

Plugs into the core CLI through :func:`add_parser` (the CLI plug-in contract)::

    jupyter envpack lock NB [--python PATH | --kernel NAME] [--base-image REF] [--no-hashes]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the ``lock`` verb on the ``jupyter envpack`` parser."""
    from ..cli import BASE_IMAGE_ENV, add_environment_arguments, add_reconstruct_arguments

    parser = subparsers.add_parser(
        "lock",
        help="write <name>.envpack.lock (pins, hashes, base image) beside the notebook",
        description="Snapshot the notebook's kernel and write its pins, the sha256 of their "
        "wheels and the base image to <name>.envpack.lock, for review and for CI "
        "(snapshot, build, run and `pytest --envpack` use it when present).",
    )
    parser.add_argument("notebook", metavar="NB", help="the notebook (.ipynb)")
    add_environment_arguments(parser)
    add_reconstruct_arguments(parser)
    parser.add_argument(
        "--base-image",
        metavar="REF",
        default=os.environ.get(BASE_IMAGE_ENV) or None,
        help=f"base image to record (default: c.EnvPack.base_image, env {BASE_IMAGE_ENV})",
    )
    parser.add_argument(
        "--no-hashes", action="store_true", help="do not fetch the wheels to record their sha256"
    )
    parser.set_defaults(func=cmd_lock)


def wheel_hashes(files: list[Path]) -> dict[str, list[str]]:
    """``{canonical name: [sha256, …]}`` of wheel files."""
    out: dict[str, list[str]] = {}
    for f in files:
        name = str(canonicalize_name(parse_wheel_filename(f.name)[0]))
        digest = hashlib.sha256()
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        out.setdefault(name, []).append(digest.hexdigest())
    return out


def _base_image_id(ref: str | None) -> str | None:
    if not ref:
        return None
    try:
        from ..image.engine import connect

        return str(connect().images.get(ref).id)
    except Exception:  # no engine, or not pulled here: the reference alone is recorded
        return None


def cmd_lock(args: argparse.Namespace) -> int:
    """Write the lock file and print its path."""
    from ..cli import make_reporter, reconstruct_options
    from ..config import load_envpack_config
    from ..image.refs import validate_reference
    from ..image.wheels import ensure_wheels
    from . import SnapshotOptions, take_snapshot
    from .lock import lock_from_spec, write_lock

    cfg = load_envpack_config()
    base = args.base_image or cfg.base_image
    if base:
        validate_reference(base, "base image")
    options = SnapshotOptions(reconstruct=reconstruct_options(args))  # the header says so
    spec = take_snapshot(
        args.notebook, python=args.python, kernel=args.kernel or cfg.kernel, options=options
    )
    hashes: dict[str, list[str]] = {}
    if not args.no_hashes and spec.packages:
        files = ensure_wheels(
            spec.requirements_lines(), spec.python_minor, cfg.build_options(), make_reporter(args)
        )
        by_canonical = wheel_hashes(files)
        hashes = {
            p.name: by_canonical.get(str(canonicalize_name(p.name)), []) for p in spec.packages
        }
    lock = lock_from_spec(spec, hashes, base, _base_image_id(base))
    path = write_lock(args.notebook, lock)
    for w in spec.warnings:
        sys.stderr.write(f"warning: {w.code}: {w.message}\n")
    sys.stdout.write(f"{path}\n")
    return 0
