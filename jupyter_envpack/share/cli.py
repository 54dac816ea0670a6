"""``jupyter envpack binder``: the Binder link, badges and ``binder/`` folder from the command line.

Plugs into the core CLI through :func:`add_parser` (the CLI plug-in contract)::

    jupyter envpack binder NB [--python PATH | --kernel NAME] [--write] [--json] [--host URL]
                              [--ref REF | --branch]
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..cli import add_reconstruct_arguments
from ..errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the ``binder`` verb on the ``jupyter envpack`` parser."""
    parser = subparsers.add_parser(
        "binder",
        help="Binder link, badges and binder/ folder for a notebook",
        description="Print the Binder launch link and badges of a notebook in a git repository, "
        "with warnings where Binder would not see what you see; --write writes "
        "binder/ (pinned requirements.txt, runtime.txt, apt.txt when needed).",
    )
    parser.add_argument("notebook", metavar="NB", help="the notebook (.ipynb)")
    from ..cli import add_environment_arguments

    add_environment_arguments(parser)
    add_reconstruct_arguments(parser)
    parser.add_argument(
        "--write",
        action="store_true",
        help="write binder/ at the repository root from the snapshot",
    )
    parser.add_argument(
        "--json", action="store_true", help="print {link, badges, warnings, ...} as JSON"
    )
    parser.add_argument(
        "--host",
        metavar="URL",
        default=None,
        help="BinderHub base URL (default https://mybinder.org; https only)",
    )
    ref = parser.add_mutually_exclusive_group()
    ref.add_argument("--ref", metavar="REF", help="git ref for the link (default: HEAD's commit)")
    ref.add_argument("--branch", action="store_true", help="link to the current branch")
    parser.set_defaults(func=run_binder)


def _print_text(info: dict[str, Any], written: list[str]) -> None:
    out = sys.stdout
    for path in written:
        print(f"wrote {path}", file=out)
    if info["link"]:
        print(info["link"], file=out)
        print(f"\nMarkdown: {info['badges']['markdown']}", file=out)
        print(f"RST:\n{info['badges']['rst']}", file=out)
    else:
        print("no Binder link (see the warnings)", file=out)
    for w in info["warnings"]:
        print(f"warning: {w['message']}", file=sys.stderr)
        if w.get("hint"):
            print(f"  fix: {w['hint']}", file=sys.stderr)


def run_binder(args: argparse.Namespace) -> int:
    """Handle ``jupyter envpack binder``; EnvpackError propagates to the CLI's main."""
    from ..snapshot import take_snapshot
    from .binder import binder_info, write_binder
    from .links import normalize_host

    host = normalize_host(args.host)  # refuse a bad host before the (slower) snapshot
    options = None
    if args.reconstruct:
        from ..snapshot import ReconstructOptions, SnapshotOptions

        ropts = ReconstructOptions(args.as_of, args.python_version)
        options = SnapshotOptions(reconstruct=ropts)
    elif args.as_of or args.python_version:
        raise InputError("--as-of and --python-version need --reconstruct")
    spec = take_snapshot(
        args.notebook,
        python=getattr(args, "python", None),
        kernel=getattr(args, "kernel", None),
        options=options,
    )
    written: list[str] = []
    if args.write:
        written = write_binder(args.notebook, spec=spec)["written"]
    info = binder_info(args.notebook, spec=spec, host=host, ref=args.ref, branch=args.branch)
    if args.json:
        print(json.dumps({**info, "written": written}, indent=2))
    else:
        _print_text(info, written)
    return 0
