"""``jupyter envpack …``: the command line over the core (also what CI pipelines use).

Exit codes: 0 success (for ``run``: every code cell reproduced), 1 something did not reproduce or
failed in the notebook, 2 usage or infrastructure errors, 3 (``run``) nothing to compare: no code
cell of the notebook had been executed, so the rerun proves nothing. Progress goes to stderr; stdout holds
only results, so ``--json`` output and ``build``'s image reference can be piped.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .defaults import BUILD_DEADLINE, CELL_TIMEOUT, LAYOUTS, RUN_DEADLINE
from .errors import EnvpackError, InputError

TYPE_CHECKING = False  # not typing's: `jupyter envpack build`'s no-op path skips typing (~3 ms)
if TYPE_CHECKING:
    from typing import Any

    from .config import EnvPack
    from .events import ProgressEvent, Reporter
    from .execute import RunOptions
    from .execute.compare import Report
    from .image import BuildOptions, BuildResult
    from .pipeline import Prepared
    from .snapshot import EnvSpec
    from .snapshot.spec import PinnedPackage

PLUGINS = (
    "jupyter_envpack.share.cli",
    "jupyter_envpack.cluster.cli",
    "jupyter_envpack.snapshot.lock_cli",
)
BASE_IMAGE_ENV = "ENVPACK_BASE_IMAGE"


# ---------------------------------------------------------------- reusable argument groups
def add_environment_arguments(p: argparse.ArgumentParser) -> None:
    """``--python`` / ``--kernel``: which interpreter's environment to snapshot."""
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--python",
        metavar="PATH",
        help="the kernel's interpreter (default: the notebook's kernelspec, else this Python)",
    )
    g.add_argument("--kernel", metavar="NAME", help="a Jupyter kernelspec name")
    p.add_argument(
        "--include",
        metavar="GLOB",
        action="append",
        default=[],
        help="also ship files matching GLOB (relative to the notebook; repeatable)",
    )
    p.add_argument(
        "--exclude",
        metavar="GLOB",
        action="append",
        default=[],
        help="never ship data files matching GLOB (repeatable)",
    )
    p.add_argument(
        "--max-data-bytes",
        type=int,
        metavar="N",
        help="cap on the total size of shipped data files (default 200 MiB)",
    )


def add_lock_arguments(p: argparse.ArgumentParser) -> None:
    """``--lock`` / ``--no-lock``: take the pins from ``<stem>.envpack.lock`` when it exists."""
    p.add_argument(
        "--lock",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="use <name>.envpack.lock beside the notebook when present (default: yes)",
    )


def add_reconstruct_arguments(p: argparse.ArgumentParser) -> None:
    """``--reconstruct [--as-of DATE] [--python-version X.Y]``: no environment at hand."""
    p.add_argument(
        "--reconstruct",
        action="store_true",
        help="no environment at hand: reconstruct one from the repository's requirements, %%pip "
        "lines and import names, each verified on its wheel (an educated guess, not what ran)",
    )
    p.add_argument(
        "--as-of",
        metavar="DATE",
        help="with --reconstruct: newest release date (default: the notebook's last commit, "
        "else its mtime)",
    )
    p.add_argument(
        "--python-version",
        metavar="X.Y",
        help="with --reconstruct: target Python (default: the base image's when one is set, "
        "else the notebook's when a python:X.Y-slim exists for it, else the kernel's)",
    )


def reconstruct_options(args: argparse.Namespace) -> Any:
    """``ReconstructOptions`` from ``--reconstruct``/``--as-of``/``--python-version`` (or None)."""
    if not getattr(args, "reconstruct", False):
        if getattr(args, "as_of", None) or getattr(args, "python_version", None):
            raise InputError("--as-of and --python-version need --reconstruct")
        return None
    from .snapshot import ReconstructOptions

    base = base_image_override(getattr(args, "base_image", None))
    return ReconstructOptions(
        args.as_of, args.python_version, base or envpack_config(args).base_image
    )


def add_build_arguments(p: argparse.ArgumentParser) -> None:
    """Build options shared by ``build``, ``run``, ``submit``…"""
    p.add_argument(
        "--base-image",
        metavar="REF",
        help=f"base image (default: env {BASE_IMAGE_ENV}, else c.EnvPack.base_image, "
        "else python:X.Y-slim for the kernel)",
    )
    p.add_argument(
        "--ca-bundle",
        metavar="FILE",
        help="CA bundle for reaching package indexes "
        "(used on this machine only, never copied into the image)",
    )
    p.add_argument("--index-url", metavar="URL", help="package index (default: your pip's)")
    p.add_argument(
        "--extra-index-url",
        metavar="URL",
        action="append",
        help="extra package index (repeatable; default c.EnvPack.extra_index_urls)",
    )
    p.add_argument(
        "--wheels-via",
        choices=("auto", "serve", "copy"),
        help="how wheels reach the build: served from this machine over the Docker "
        "bridge (one layer), or copied into the context (any engine); default auto",
    )
    p.add_argument(
        "--layers",
        choices=LAYOUTS,
        help="environment layout: one layer (fastest first build), or heavy distributions in "
        "layers sibling notebooks share; default c.EnvPack.layers (single)",
    )
    p.add_argument(
        "--no-cache", action="store_true", help="rebuild every layer even when the image exists"
    )
    p.add_argument(
        "--build-deadline",
        type=float,
        metavar="S",
        help=f"give up building after S seconds (default c.EnvPack.build_deadline, {BUILD_DEADLINE:g})",
    )


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """Run options shared by ``run`` and ``submit``."""
    p.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        default=[],
        help="set a parameter (papermill style; VALUE parsed as JSON when it parses)",
    )
    p.add_argument(
        "--output",
        metavar="PATH",
        help="where to write the executed notebook (default: <name>.envpack.ipynb beside it)",
    )
    p.add_argument(
        "--cell-timeout",
        type=float,
        metavar="S",
        help=f"per-cell timeout in seconds (default c.EnvPack.cell_timeout, {CELL_TIMEOUT:g})",
    )
    p.add_argument(
        "--deadline",
        type=float,
        metavar="S",
        help=f"overall run time limit in seconds (default c.EnvPack.run_deadline, {RUN_DEADLINE:g})",
    )
    p.add_argument("--memory", metavar="SIZE", help="memory limit, e.g. 2g (default 2g)")
    p.add_argument("--no-network", action="store_true", help="run without network access")
    p.add_argument(
        "--gpus",
        metavar="N|all",
        help="GPUs: 'all' or a count for local runs (engine device requests), a count for "
        "cluster jobs (default c.EnvPack.gpus: none)",
    )
    p.add_argument(
        "--sweep",
        action="append",
        metavar="NAME=V1,V2|A..B",
        help="a parameter sweep axis (repeatable: the cartesian product); "
        "notebooks and summary.csv go to --output or <name>.sweep/",
    )
    p.add_argument("--sweep-file", metavar="FILE", help="sweep rows from a CSV or JSON file")
    p.add_argument(
        "--max-parallel", type=int, default=2, metavar="N", help="sweep runs at once (default 2)"
    )
    p.add_argument(
        "--tolerance",
        type=float,
        metavar="REL",
        help="relative tolerance when comparing numbers (default 0: exact)",
    )


def envpack_config(args: argparse.Namespace) -> EnvPack:
    """The ``c.EnvPack`` config of this invocation (Jupyter config path; loaded once per ``args``)."""
    config: EnvPack | None = getattr(args, "envpack_config", None)
    if config is None:
        from .config import load_envpack_config

        config = load_envpack_config()
        args.envpack_config = config
    return config


def base_image_override(flag: str | None) -> str | None:
    """``--base-image``, else ``$ENVPACK_BASE_IMAGE`` (both above ``c.EnvPack.base_image``)."""
    return flag or os.environ.get(BASE_IMAGE_ENV) or None


def build_options_from_args(args: argparse.Namespace) -> BuildOptions:
    """``BuildOptions``: flags over ``c.EnvPack`` over the built-in defaults."""
    opts = envpack_config(args).build_options(
        base_image=base_image_override(getattr(args, "base_image", None)),
        ca_bundle=getattr(args, "ca_bundle", None),
        index_url=getattr(args, "index_url", None),
        extra_index_urls=getattr(args, "extra_index_url", None),
        deadline=getattr(args, "build_deadline", None),
        no_cache=getattr(args, "no_cache", None) or None,
        wheels_via=getattr(args, "wheels_via", None),
        layers=getattr(args, "layers", None),
    )
    opts.validate()
    return opts


def run_options_from_args(args: argparse.Namespace) -> RunOptions:
    """``RunOptions``: flags over ``c.EnvPack`` over the built-in defaults."""
    from .execute.parameters import parse_cli_parameters

    opts = envpack_config(args).run_options(
        parameters=parse_cli_parameters(getattr(args, "parameter", None)),
        output=getattr(args, "output", None),
        cell_timeout=getattr(args, "cell_timeout", None),
        deadline=getattr(args, "deadline", None),
        mem_limit=getattr(args, "memory", None),
        network=False if getattr(args, "no_network", False) else None,
        tolerance=getattr(args, "tolerance", None),
        cpus=getattr(args, "cpus", None),
        pids=getattr(args, "pids", None),
        gpus=getattr(args, "gpus", None),
    )
    opts.validate()
    return opts


class _RichReporter:
    """Progress on stderr: one line per step, a bar for progress, logs with ``--verbose``."""

    def __init__(self, verbose: bool) -> None:
        from rich.console import Console

        self.console = Console(stderr=True, highlight=False)
        self.verbose = verbose
        self.progress: Any = None
        self.task: Any = None

    def __call__(self, event: ProgressEvent) -> None:
        from rich.markup import escape

        msg = escape(event.message)
        if event.kind == "step":
            self._bar(event)
            self.console.print(
                f"[bold cyan]{event.stage}[/] {msg[:110]}", overflow="ellipsis", no_wrap=True
            )
        elif event.kind == "progress":
            self._bar(event)
        elif event.kind == "warning":
            self.console.print(f"[yellow]warning[/] {msg}")
        elif event.kind == "info":
            self.console.print(f"[green]{event.stage}[/] {msg}")
        elif self.verbose:
            self.console.print(f"[dim]{msg}[/]")

    def _bar(self, event: ProgressEvent) -> None:
        if event.progress is None:
            return
        from rich.progress import Progress

        if self.progress is None:
            self.progress = Progress(console=self.console, transient=True)
            self.progress.start()
            self.task = self.progress.add_task(event.stage, total=1.0)
        self.progress.update(self.task, completed=event.progress, description=event.stage)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def make_reporter(args: argparse.Namespace) -> Reporter:
    """The CLI's reporter (silent with ``--quiet``)."""
    if getattr(args, "quiet", False):
        return lambda event: None
    rep = _RichReporter(getattr(args, "verbose", False))
    _open_reporters.append(rep)
    return rep


_open_reporters: list[_RichReporter] = []


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------- verbs
def _prepare(args: argparse.Namespace, reporter: Reporter | None = None) -> Prepared:
    """``args.notebook``'s snapshot (or lock) through the pipeline, with the build options.

    Flags over ``c.EnvPack`` over the defaults; the lock's base image wins over the config's
    but not over ``--base-image`` / ``$ENVPACK_BASE_IMAGE``.
    """
    from .events import null_reporter
    from .pipeline import prepare

    config = envpack_config(args)
    kernel = args.kernel or (None if args.python else config.kernel)
    options = config.snapshot_options(
        max_bytes=getattr(args, "max_data_bytes", None),
        include=getattr(args, "include", None) or None,
        exclude=getattr(args, "exclude", None) or None,
        index_url=getattr(args, "index_url", None),
        extra_index_urls=getattr(args, "extra_index_url", None),
        ca_bundle=getattr(args, "ca_bundle", None),
    )
    import dataclasses  # here: the no-op build path does not import it (~8 ms with inspect)

    options = dataclasses.replace(options, reconstruct=reconstruct_options(args))
    building = hasattr(args, "build_deadline")  # verbs with the build flags
    return prepare(
        args.notebook,
        build_options_from_args(args) if building else None,  # bad options fail before any work
        python=args.python,
        kernel=kernel,
        snapshot=options,
        use_lock=getattr(args, "lock", True),
        lock_base=base_image_override(getattr(args, "base_image", None)) is None,
        reporter=reporter or null_reporter,
    )


def _why(p: PinnedPackage) -> str:
    if p.reason == "runner":
        return "[dim]added to run the kernel[/]"
    if p.reason == "pip-pin":
        return "%pip pin (from the index)"
    if p.requested:
        return "imports " + ", ".join(p.modules)
    return "[dim]dependency[/]"


def _print_reconstruction(rec: dict[str, Any]) -> None:
    """The candidates of a reconstruction, chosen and rejected, with their evidence."""
    for item in rec.get("imports", []):
        chosen = item["chosen"] or "nothing provides it"
        _out(f"  {item['import']}: {chosen} — {item['evidence']}")
        for r in item["rejected"]:
            _out(f"      rejected {r['name']}: {r['why']}")


def cmd_snapshot(args: argparse.Namespace) -> int:
    """Print the pinned environment of a notebook."""
    spec = _prepare(args).spec
    if args.json:
        _out(json.dumps(spec.to_json(), indent=2))
        return 0
    if spec.reconstruction:
        _out(spec.warnings[0].message)
        _print_reconstruction(spec.reconstruction)
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    table = Table(title=f"{spec.notebook} — Python {spec.python_version}", title_justify="left")
    table.add_column("distribution")
    table.add_column("version")
    table.add_column("why")
    for p in spec.packages:
        table.add_row(p.name, p.version, _why(p))
    console.print(table)
    from rich.markup import escape

    if spec.local_files:
        console.print("local files: " + escape(", ".join(spec.local_files)))
    if spec.data_files:
        total = sum(d.size for d in spec.data_files)
        shown = ", ".join(f"{d.path} ({d.size} B)" for d in spec.data_files[:20])
        more = f", … {len(spec.data_files) - 20} more" if len(spec.data_files) > 20 else ""
        console.print(f"data files ({total / 2**20:.1f} MiB): " + escape(shown + more))
    for w in spec.warnings:
        where = f" (cell {w.cell})" if w.cell is not None else ""
        console.print(
            f"[yellow]{w.code}[/]{where}: {w.message}" + (f"\n  → {w.hint}" if w.hint else "")
        )
    console.print(f"hash {spec.hash[:20]}")
    return 0


def cmd_dockerfile(args: argparse.Namespace) -> int:
    """Print the Dockerfile, or write the whole build context to a folder."""
    from .image import prepare_context, render_dockerfile

    prepared = _prepare(args)
    spec, opts = prepared.spec, prepared.build  # with the lock file's base image
    if not args.output_dir:
        _out(render_dockerfile(spec, opts, notebook_name=Path(args.notebook).name).rstrip())
        return 0
    folder = Path(args.output_dir)
    if folder.exists() and any(folder.iterdir()) and not args.force:
        raise InputError(f"{folder} is not empty", hint="choose an empty folder or pass --force")
    ctx = prepare_context(spec, args.notebook, opts, make_reporter(args), wheels=not args.no_wheels)
    folder.mkdir(parents=True, exist_ok=True)
    ctx.write(folder, wheels=not args.no_wheels)
    _out(str(folder))
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    """Build (or find) the notebook's image; the last stdout line is the image reference."""
    from .events import StageClock
    from .pipeline import build

    settings = _memo_settings(args)  # before the lock file's base image and hashes join args
    clock = StageClock(make_reporter(args))
    prepared = _prepare(args, clock)
    result = build(prepared, clock)
    clock.finish()
    _remember_build(args, settings, result, prepared.spec, clock.kept)
    return _print_build(args, result.to_json())


def _print_build(args: argparse.Namespace, result: dict[str, Any]) -> int:
    if args.json:
        _out(json.dumps(result, indent=2))
    _out(str(result["image"]))
    return 0


def _memo_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The flags that shape a build, with the notebook's absolute path (the no-op memo's key)."""
    skip = {"quiet", "verbose", "json", "func", "command", "envpack_config"}
    settings = {k: v for k, v in vars(args).items() if k not in skip}
    settings["notebook"] = str(Path(args.notebook).absolute())
    return settings


def noop_build(args: argparse.Namespace) -> int | None:
    """``build`` of an unchanged notebook whose image exists, from the memo (None: full path).

    No config, docker SDK or snapshot import: see :mod:`jupyter_envpack.buildmemo`.
    """
    if args.command != "build" or args.no_cache or args.reconstruct:
        return None  # a reconstruction depends on files the memo does not watch
    from .buildmemo import recall, replay

    memo = recall(args.notebook, _memo_settings(args))
    if memo is None:
        return None
    if not args.quiet:
        replay(memo, make_reporter(args))
    return _print_build(args, memo.result)


def _remember_build(
    args: argparse.Namespace,
    settings: dict[str, Any],
    result: BuildResult,
    spec: EnvSpec,
    events: list[Any],
) -> None:
    from .buildmemo import remember_build

    if build_options_from_args(args).no_cache or args.reconstruct:
        return  # c.EnvPack.no_cache: every build is a real one; a reconstruction is never memoised
    remember_build(args.notebook, settings, result.to_json(), spec, not args.python, events)


def refuse_run_conflicts(image: str | None, reconstruct: bool, engine: str, sweep: bool) -> None:
    """Flags of ``run`` that contradict each other (the CLI and ``%envpack run`` alike)."""
    if image and reconstruct:
        raise InputError("--reconstruct builds its own image", hint="drop --image or --reconstruct")
    if engine == "venv" and (image or sweep):
        raise InputError(
            "--engine venv reruns one notebook from its snapshot",
            hint="drop --image/--sweep, or use the docker engine",
        )


def cmd_run(args: argparse.Namespace) -> int:
    """Rerun the notebook in its image (or a fresh venv) and report cell by cell."""
    from .execute.sweep import rows_from
    from .pipeline import build, rerun

    run_opts = run_options_from_args(args)
    build_options_from_args(args)  # bad options fail before any work
    if args.image:
        from .image.refs import validate_reference

        validate_reference(args.image)
    rows = rows_from(args.sweep, args.sweep_file, run_opts.parameters)
    refuse_run_conflicts(args.image, args.reconstruct, args.engine, bool(rows))
    reporter = make_reporter(args)
    prepared = None if args.image else _prepare(args, reporter)
    if rows:
        image = args.image if prepared is None else build(prepared, reporter).image
        return _run_sweep(args, image, rows, run_opts)
    result, _ = rerun(args.notebook, prepared, args.engine, run_opts, reporter, image=args.image)
    report = result.report
    if args.json:
        _out(json.dumps(report.to_json(), indent=2))
    else:
        _print_report(report)
    return RUN_EXIT_CODES[report.verdict]


# ---------------------------------------------------------------- run's exit-code contract
RUN_EXIT_CODES = {"reproduced": 0, "not-reproduced": 1, "nothing-to-compare": 3}
"""``run``'s exit code per ``Report.verdict`` (2 stays usage/infrastructure; README's contract)."""
VERDICT_MARKUP = {
    "reproduced": "[green]reproduced[/]",
    "not-reproduced": "[red]did not reproduce[/]",
    "nothing-to-compare": "[bold]nothing to compare[/] (no code cell had been executed)",
}


def _run_sweep(
    args: argparse.Namespace, image: str, rows: list[dict[str, Any]], run_opts: RunOptions
) -> int:
    from dataclasses import replace

    from .execute.sweep import run_local_sweep, sweep_folder, write_summary

    folder = sweep_folder(args.notebook, args.output)
    sys.stderr.write(f"sweep: {len(rows)} runs, {args.max_parallel} at once → {folder}\n")
    runs = run_local_sweep(
        image,
        Path(args.notebook),
        rows,
        folder=folder,
        options=replace(run_opts, output=None),
        max_parallel=args.max_parallel,
    )
    summary = write_summary(folder / "summary.csv", runs)
    import sqlite3

    from .cluster.sweeps import record_local_sweep

    try:
        record_local_sweep(str(args.notebook), image, runs, args.max_parallel)  # `jobs` lists it
    except (EnvpackError, OSError, sqlite3.Error) as exc:  # the sweep itself is done and written
        sys.stderr.write(f"sweep: not added to `jupyter envpack jobs` ({exc})\n")
    failed = [r.index for r in runs if r.state != "succeeded"]
    sys.stderr.write(f"sweep: {len(runs) - len(failed)} succeeded, {len(failed)} failed\n")
    _out(str(summary))
    return 1 if failed else 0


def _print_report(report: Report) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False)
    if report.origin == "reconstructed":
        console.print(
            f"[bold yellow]RECONSTRUCTED environment[/] (packages as of {report.as_of}): an "
            "educated guess, not what ran — compared with the notebook's stored outputs"
        )
    colours = {
        "same": "green",
        "error": "green",
        "skipped": "dim",
        "differs": "yellow",
        "image-differs": "yellow",
        "new-error": "red",
        "not-run": "red",
    }
    for cell in report.cells:
        extra = f" {cell.ename}: {escape(cell.evalue or '')}" if cell.ename else ""
        console.print(
            f"cell {cell.index:>3}  [{colours.get(cell.status, 'white')}]{cell.status}[/]{extra}"
        )
        if cell.diff:
            console.print(f"[dim]{escape(cell.diff)}[/]")
        if cell.reason:
            console.print(f"[cyan]likely reason:[/] {escape(cell.reason['text'])}")
    if report.parameters:
        used = ", ".join(f"{k}={json.dumps(v)}" for k, v in report.parameters.items())
        console.print(f"parameters: {escape(used)}")
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning['message'])}")
        console.print(f"[dim]hint: {escape(warning['hint'])}[/]")
    verdict = VERDICT_MARKUP[report.verdict]
    counts = ", ".join(f"{n} {s}" for s, n in sorted(report.summary.items()))
    console.print(f"{verdict} ({counts}; run {report.run_status}) → {report.output_path}")


# ---------------------------------------------------------------- parser and main
def _needs_plugins(argv: Sequence[str] | None) -> bool:
    """False when the first argument is a built-in verb: its imports (~0.3 s) are not paid."""
    return _builtin_verb(argv) is None


def _builtin_verb(argv: Sequence[str] | None) -> str | None:
    """The built-in verb ``argv`` starts with (then only its parser is built), else None."""
    args = list(sys.argv[1:] if argv is None else argv)
    return args[0] if args and args[0] in BUILTIN_VERBS else None


def _add_snapshot(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("snapshot", parents=[common], help="show the pinned environment")
    p.add_argument("notebook")
    add_environment_arguments(p)
    add_lock_arguments(p)
    p.add_argument("--json", action="store_true", help="print envpack.snapshot/1 JSON")
    add_reconstruct_arguments(p)
    p.set_defaults(func=cmd_snapshot)


def _add_dockerfile(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "dockerfile", parents=[common], help="print the Dockerfile or write the build context"
    )
    p.add_argument("notebook")
    add_environment_arguments(p)
    add_lock_arguments(p)
    add_reconstruct_arguments(p)
    add_build_arguments(p)
    p.add_argument("-o", "--output-dir", metavar="DIR", help="write the whole build context here")
    p.add_argument("--no-wheels", action="store_true", help="with -o: do not fetch the wheels")
    p.add_argument("--force", action="store_true", help="with -o: write into a non-empty folder")
    p.set_defaults(func=cmd_dockerfile)


def _add_build(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("build", parents=[common], help="build the image (cached by content)")
    p.add_argument("notebook")
    add_environment_arguments(p)
    add_lock_arguments(p)
    add_reconstruct_arguments(p)
    add_build_arguments(p)
    p.add_argument("--json", action="store_true", help="also print the build result as JSON")
    p.set_defaults(func=cmd_build)


def _add_run(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("run", parents=[common], help="rerun the notebook in its image and report")
    p.add_argument("notebook")
    p.add_argument("--image", metavar="REF", help="use this image instead of building")
    p.add_argument(
        "--engine",
        choices=("docker", "venv"),
        default="docker",
        help="docker: build and run the image; venv: a fresh local virtualenv of the lock, "
        "no container engine needed (default docker)",
    )
    add_environment_arguments(p)
    add_lock_arguments(p)
    add_reconstruct_arguments(p)
    add_build_arguments(p)
    add_run_arguments(p)
    p.add_argument("--cpus", type=float, metavar="N", help="CPU limit in cores (default 2)")
    p.add_argument("--pids", type=int, metavar="N", help="process/thread limit (default 512)")
    p.add_argument("--json", action="store_true", help="print envpack.report/1 JSON")
    p.set_defaults(func=cmd_run)


_BUILTIN_PARSERS = {
    "snapshot": _add_snapshot,
    "dockerfile": _add_dockerfile,
    "build": _add_build,
    "run": _add_run,
}
BUILTIN_VERBS = frozenset(_BUILTIN_PARSERS)


def build_parser(plugins: bool = True, only: str | None = None) -> argparse.ArgumentParser:
    """The full argument parser (plugins included unless ``plugins`` is false).

    ``only``: a built-in verb; the parser then holds that verb alone (what ``main`` does when
    the command line starts with it: the others' arguments cost a few ms of every command).
    """
    parser = argparse.ArgumentParser(
        prog="jupyter envpack",
        description="Turn a notebook into a reproducible, runnable container.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    common.add_argument("-v", "--verbose", action="store_true", help="show build and run logs")
    add_engine_argument(common)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for verb, add_verb in _BUILTIN_PARSERS.items():
        if only is None or verb == only:
            add_verb(sub, common)
    if only is not None:
        return parser

    for name in PLUGINS if plugins else ():
        add: Callable[[Any], None] = importlib.import_module(name).add_parser
        before = set(sub.choices)
        add(sub)
        for verb in set(sub.choices) - before:  # plugin verbs get -q/-v too
            verb_parser = sub.choices[verb]
            known = {a.dest for a in verb_parser._actions}
            if "quiet" not in known:
                verb_parser.add_argument(
                    "-q", "--quiet", action="store_true", help="no progress output"
                )
            if "verbose" not in known:
                verb_parser.add_argument("-v", "--verbose", action="store_true", help="show logs")
            if "engine_url" not in known:
                add_engine_argument(verb_parser)
    return parser


def _version() -> str:
    try:
        from ._version import __version__
    except ImportError:  # pragma: no cover
        return "0+unknown"
    return __version__


def add_engine_argument(p: argparse.ArgumentParser) -> None:
    """``--engine-url``: the container engine's API (Docker, or Podman's service)."""
    p.add_argument(
        "--engine-url",
        metavar="URL",
        help="engine API, e.g. unix:///run/podman/podman.sock "
        "(default: c.EnvPack.engine_url, else DOCKER_HOST)",
    )


def _choose_engine(args: argparse.Namespace) -> None:
    from .image.engine import use_engine

    url = getattr(args, "engine_url", None)
    if url is None:
        url = envpack_config(args).engine_url  # loaded once per process, shared with the verb
    use_engine(url)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``jupyter-envpack`` / ``jupyter envpack``."""
    verb = _builtin_verb(argv)
    parser = build_parser(plugins=verb is None, only=verb)
    args = parser.parse_args(argv)
    try:
        done = noop_build(args)
        if done is not None:
            return done
        _choose_engine(args)
        return int(args.func(args))
    except EnvpackError as exc:
        _close_reporters()
        sys.stderr.write(f"error: {exc.message}\n")
        if exc.hint:
            sys.stderr.write(f"hint: {exc.hint}\n")
        log_tail = getattr(exc, "log_tail", None)
        if log_tail:
            sys.stderr.write(
                "last log lines:\n" + "\n".join(f"  {ln}" for ln in log_tail[-15:]) + "\n"
            )
        return 2
    except KeyboardInterrupt:
        _close_reporters()
        sys.stderr.write("cancelled\n")
        return 130
    finally:
        _close_reporters()


def _close_reporters() -> None:
    while _open_reporters:
        _open_reporters.pop().close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
