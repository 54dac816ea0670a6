"""``%envpack``: snapshot, Dockerfile, build, run and Binder from inside the notebook's kernel.

Load with ``%load_ext jupyter_envpack``; ``%envpack?`` shows the help. The magics act on the
notebook that holds the cell (the kernel session's path, or ``--notebook PATH``) and probe the
environment **in-process**: the kernel is the environment. They call the core and never
re-implement it; long verbs show live progress (:mod:`jupyter_envpack.widgets`).

Errors are short cell errors: an :class:`~jupyter_envpack.errors.EnvpackError` is shown as its
message and hint (no traceback into the library), bad arguments as an IPython ``UsageError``.
Nothing heavy (docker, nbclient) is imported until a verb needs it.

Other areas add verbs with :func:`register_verb` (e.g. the cluster's ``submit`` and ``jobs``).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core import magic as _magic
from IPython.core import magic_arguments as _margs
from IPython.core.error import UsageError
from IPython.core.magic import Magics

from .cli import BASE_IMAGE_ENV, base_image_override, refuse_run_conflicts
from .errors import EnvpackError, NotFoundError
from .events import CancelToken, Reporter, null_reporter

if TYPE_CHECKING:
    from .cluster.jobs import SubmitOptions
    from .config import EnvPack
    from .execute import RunOptions, RunResult
    from .image import BuildOptions, BuildResult
    from .pipeline import Prepared
    from .widgets import FieldsView, Progress, SnapshotView, TableView, TextView

# IPython's decorators are untyped; typed aliases keep `mypy --strict` meaningful here.
_Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
argument: Callable[..., _Decorator] = _margs.argument
argument_group: Callable[..., _Decorator] = _margs.argument_group
magic_arguments: Callable[..., _Decorator] = _margs.magic_arguments
line_magic: _Decorator = _magic.line_magic
no_var_expand: _Decorator = _magic.no_var_expand
magics_class: Callable[[type], type] = _magic.magics_class

Handler = Callable[["EnvpackMagics", argparse.Namespace], Any]

# Options that only some verbs take: dest → verbs (everything else is common).
_BUILDING = {"build", "run", "submit"}
_RUNNING = {"run", "submit"}
VERB_OPTIONS: dict[str, set[str]] = {
    "reconstruct": {"snapshot", "dockerfile", *_BUILDING},
    "as_of": {"snapshot", "dockerfile", *_BUILDING},
    "base_image": {"dockerfile", "status", *_BUILDING},
    "ca_bundle": _BUILDING,
    "index_url": {"dockerfile", *_BUILDING},
    "extra_index_url": {"dockerfile", *_BUILDING},
    "build_deadline": _BUILDING,
    "parameter": _RUNNING,
    "output": _RUNNING,
    "cell_timeout": _RUNNING,
    "deadline": _RUNNING,
    "memory": _RUNNING,
    "image": _RUNNING,
    "no_network": {"run"},
    "tolerance": {"run"},
    "engine": {"run"},
    "write": {"binder"},
    "host": {"binder"},
    "ref": {"binder"},
    "branch": {"binder"},
    "backend": {"submit"},
    "registry": {"submit"},
    "cpu": {"submit"},
    "wait": {"submit"},
    "dry_run": {"submit"},
    "limit": {"jobs"},
}
VERB_OPTIONS = {dest: set(verbs) for dest, verbs in VERB_OPTIONS.items()}  # unshared sets
_VERBS: dict[str, Handler] = {}


def register_verb(name: str, handler: Handler, options: tuple[str, ...] = ()) -> None:
    """Add ``%envpack NAME``: ``handler(magics, args)`` returns what the cell shows.

    ``options`` are the dests of existing magic arguments the verb accepts besides the common ones.
    """
    _VERBS[name] = handler
    for dest in options:
        VERB_OPTIONS.setdefault(dest, set()).add(name)


def _short_error(exc: EnvpackError) -> EnvpackError:
    """Make IPython show ``exc`` as two lines (message, fix) instead of a deep traceback.

    IPython renders an exception through its ``_render_traceback_()`` when it has one; the cell
    still fails (nbclient sees an error with ``ename`` = the error class).
    """
    lines = [f"\x1b[0;31m{type(exc).__name__}\x1b[0m: {exc.message}"]
    if exc.hint:
        lines.append(f"hint: {exc.hint}")
    tail = getattr(exc, "log_tail", None) or []
    if tail:
        lines.append("last log lines:")
        lines += [f"  {line}" for line in tail[-10:]]
    exc._render_traceback_ = lambda: lines  # type: ignore[attr-defined]
    return exc


@magics_class
class EnvpackMagics(Magics):
    """The ``%envpack`` line magic."""

    @magic_arguments()
    @argument(
        "verb",
        nargs="?",
        default="status",
        help="snapshot | dockerfile | build | run | binder | status (default) | submit "
        "| jobs, plus verbs added by other parts",
    )
    @argument(
        "--notebook",
        metavar="PATH",
        help="the notebook to act on (default: the one this kernel runs)",
    )
    @argument(
        "--python", metavar="PATH", help="probe this interpreter instead of the running kernel"
    )
    @argument(
        "--kernel",
        metavar="NAME",
        help="probe this kernelspec's interpreter instead of the running kernel",
    )
    @argument(
        "--plain",
        action="store_const",
        const="text",
        dest="display",
        help="plain-text progress (default when no widget frontend is detected)",
    )
    @argument(
        "--widgets",
        action="store_const",
        const="widgets",
        dest="display",
        help="ipywidgets progress",
    )
    @argument_group("snapshot, dockerfile, build, run, submit")
    @argument(
        "--reconstruct",
        action="store_true",
        help="no environment at hand: reconstruct one (an educated guess, not what ran)",
    )
    @argument("--as-of", metavar="DATE", help="with --reconstruct: newest release date")
    @argument_group("dockerfile, build, run")
    @argument(
        "--base-image",
        metavar="REF",
        help=f"base image (default: ${BASE_IMAGE_ENV}, "
        "else c.EnvPack.base_image, else python:X.Y-slim)",
    )
    @argument("--ca-bundle", metavar="FILE", help="CA bundle to reach package indexes")
    @argument("--index-url", metavar="URL", help="package index")
    @argument("--extra-index-url", metavar="URL", action="append", help="extra index (repeat)")
    @argument("--build-deadline", metavar="S", type=float, help="build time limit (seconds)")
    @argument_group("run")
    @argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="set a parameter (VALUE parsed as JSON when it parses); repeat",
    )
    @argument("--image", metavar="REF", help="run in this image instead of building")
    @argument(
        "--engine",
        choices=("docker", "venv"),
        help="venv: rerun in a fresh local virtualenv of the lock (no container engine)",
    )
    @argument("--output", metavar="PATH", help="executed notebook (default <name>.envpack.ipynb)")
    @argument("--cell-timeout", metavar="S", type=float, help="per-cell timeout (seconds)")
    @argument("--deadline", metavar="S", type=float, help="run time limit (seconds)")
    @argument("--memory", metavar="SIZE", help="memory limit, e.g. 2g")
    @argument("--no-network", action="store_true", help="run without network access")
    @argument("--tolerance", metavar="REL", type=float, help="relative tolerance for numbers")
    @argument_group("submit, jobs (cluster)")
    @argument(
        "--backend",
        metavar="NAME",
        help="cluster backend: swarm or kubernetes (default: c.EnvPack.default_backend)",
    )
    @argument("--registry", metavar="HOST[/NS]", help="push the image here for the cluster")
    @argument("--cpu", metavar="N", type=float, help="CPU limit of the job")
    @argument("--wait", action="store_true", help="follow the job and fetch its notebook")
    @argument("--dry-run", action="store_true", help="show what would be sent; change nothing")
    @argument("--limit", metavar="N", type=int, help="how many jobs to list (default 20)")
    @argument_group("binder")
    @argument("--write", action="store_true", help="write binder/ at the repository root")
    @argument("--host", metavar="URL", help="BinderHub (default https://mybinder.org)")
    @argument("--ref", metavar="REF", help="git ref of the link (default: HEAD's commit)")
    @argument("--branch", action="store_true", help="link to the current branch")
    @no_var_expand  # `{...}` and `$x` are data here (JSON parameters), not Python to evaluate
    @line_magic
    def envpack(self, line: str) -> Any:
        """Snapshot, containerise, rerun, submit and share the notebook this kernel runs.

        Verbs: snapshot, dockerfile, build, run, binder, status, submit, jobs.

        Examples::

            %envpack snapshot                      # pinned packages + warnings
            %envpack dockerfile
            %envpack build --base-image python:3.11-slim
            %envpack run -p n 10 -p name '"x"'     # rebuild if needed, rerun, compare
            %envpack binder --write                # binder/ folder + link + badges
            %envpack status
            %envpack submit --backend swarm --wait # run it as a cluster job
            %envpack jobs
        """
        args = self._parse(line)
        handler = _VERBS.get(args.verb)
        if handler is None:
            raise UsageError(
                f"unknown verb {args.verb!r}; use one of: "
                + ", ".join(sorted(_VERBS))
                + " (see %envpack?)"
            )
        self._check_options(args)
        try:
            return handler(self, args)
        except EnvpackError as exc:
            raise _short_error(exc) from None

    def _parse(self, line: str) -> argparse.Namespace:
        # POSIX shell words (IPython's own splitter keeps the quotes); never a shell.
        try:
            argv = shlex.split(line)
        except ValueError as exc:  # unbalanced quotes
            raise UsageError(f"cannot parse the arguments: {exc}") from None
        parser: argparse.ArgumentParser = getattr(self.envpack, "parser")  # noqa: B009 - set by magic_arguments
        return parser.parse_args(argv)

    @staticmethod
    def _check_options(args: argparse.Namespace) -> None:
        for dest, verbs in VERB_OPTIONS.items():
            value = getattr(args, dest, None)
            if value not in (None, False) and args.verb not in verbs:
                flag = "--" + dest.replace("_", "-")
                raise UsageError(
                    f"{flag} does not apply to `%envpack {args.verb}` "
                    f"(only to: {', '.join(sorted(verbs))})"
                )
        if args.python and args.kernel:
            raise UsageError("give either --python or --kernel, not both")

    # ------------------------------------------------------------ shared steps
    def notebook_path(self, override: str | None = None) -> Path:
        """The notebook this cell belongs to: ``--notebook``, else the kernel session's path."""
        if override:
            path = Path(override).expanduser()
        else:
            ns = self.shell.user_ns if self.shell is not None else {}
            found = (
                ns.get("__vsc_ipynb_file__")
                or ns.get("__session__")
                or os.environ.get("JPY_SESSION_NAME")
            )
            if not found:
                raise UsageError(
                    "cannot tell which notebook this kernel runs; pass --notebook PATH"
                )
            path = Path(str(found)).expanduser()
            if not path.is_absolute() and not path.is_file():
                path = Path.cwd() / path.name  # a root-relative session path: the kernel's cwd
        if path.suffix != ".ipynb":
            raise UsageError(f"{path} is not a notebook (.ipynb); pass --notebook PATH")
        if not path.is_file():
            raise NotFoundError(
                f"no notebook at {path}", hint="save the notebook first, or pass --notebook PATH"
            )
        return path

    def envpack_config(self) -> EnvPack:
        """The ``EnvPack`` configuration (same Jupyter config files as the server and CLI)."""
        from .config import load_envpack_config
        from .image.engine import use_engine

        config = load_envpack_config()
        use_engine(config.engine_url)
        return config

    def prepare(
        self,
        args: argparse.Namespace,
        path: Path,
        reporter: Reporter = null_reporter,
        cancel: CancelToken | None = None,
        building: bool = True,
    ) -> Prepared:
        """Snapshot ``path`` through the pipeline: in-process probe of this kernel unless
        --python/--kernel; with the build options of this cell when ``building``."""
        from .pipeline import prepare

        options = self.envpack_config().snapshot_options(  # data-file rules, index from config
            index_url=getattr(args, "index_url", None),
            extra_index_urls=getattr(args, "extra_index_url", None),
            ca_bundle=getattr(args, "ca_bundle", None),
        )
        if getattr(args, "reconstruct", False):
            from dataclasses import replace

            from .snapshot import ReconstructOptions

            base = base_image_override(getattr(args, "base_image", None))
            ropts = ReconstructOptions(args.as_of, None, base or self.envpack_config().base_image)
            options = replace(options, reconstruct=ropts)
        probe = None
        if not (args.python or args.kernel or options.reconstruct):
            from .snapshot.probe import probe_current

            probe = probe_current()
        return prepare(
            path,
            self.build_options(args) if building else None,
            python=args.python,
            kernel=args.kernel,
            probe=probe,
            snapshot=options,
            use_lock=False,
            reporter=reporter,
            cancel=cancel,
        )

    def build_options(self, args: argparse.Namespace) -> BuildOptions:
        """``BuildOptions`` from the config with this cell's options on top."""
        opts = self.envpack_config().build_options(
            base_image=base_image_override(args.base_image),
            ca_bundle=args.ca_bundle,
            index_url=args.index_url,
            extra_index_urls=args.extra_index_url,
            deadline=args.build_deadline,
        )
        opts.validate()
        return opts

    def run_options(self, args: argparse.Namespace) -> RunOptions:
        """``RunOptions`` from the config with this cell's options on top."""
        from .execute.parameters import parse_cli_parameters

        opts = self.envpack_config().run_options(
            parameters=parse_cli_parameters(args.parameter),
            output=args.output,
            cell_timeout=args.cell_timeout,
            deadline=args.deadline,
            mem_limit=args.memory,
            network=False if args.no_network else None,
            tolerance=args.tolerance,
        )
        opts.validate()
        return opts

    def progress(self, title: str, args: argparse.Namespace) -> Progress:
        """A live progress display for a long verb."""
        from .widgets import make_progress

        return make_progress(title, self.shell, args.display)


# ---------------------------------------------------------------- verbs
def _prepared(m: EnvpackMagics, args: argparse.Namespace, building: bool = False) -> Prepared:
    return m.prepare(args, m.notebook_path(args.notebook), building=building)


def verb_snapshot(m: EnvpackMagics, args: argparse.Namespace) -> SnapshotView:
    """The pinned environment (a table; ``.spec`` is the EnvSpec)."""
    from .widgets import SnapshotView

    return SnapshotView(_prepared(m, args).spec)


def verb_dockerfile(m: EnvpackMagics, args: argparse.Namespace) -> TextView:
    """The Dockerfile that ``build`` would use (``.text``)."""
    from .image import render_dockerfile
    from .widgets import TextView

    done = _prepared(m, args, building=True)
    return TextView(render_dockerfile(done.spec, done.build, notebook_name=done.notebook.name))


def verb_build(m: EnvpackMagics, args: argparse.Namespace) -> FieldsView:
    """Build (or find in the cache) the notebook's image."""
    from .pipeline import build
    from .widgets import FieldsView, run_with_progress

    path = m.notebook_path(args.notebook)

    def work(reporter: Reporter, cancel: CancelToken) -> BuildResult:
        return build(m.prepare(args, path, reporter, cancel), reporter, cancel)

    result = run_with_progress(work, m.progress(f"envpack build {path.name}", args))
    headline = "image found in the cache" if result.cached else "image built"
    return FieldsView(
        headline, {"image": result.image, "duration": f"{result.duration:.1f} s"}, data=result
    )


def verb_run(m: EnvpackMagics, args: argparse.Namespace) -> FieldsView:
    """Build if needed, rerun the notebook in its image, and compare cell by cell."""
    from .execute.run import default_output
    from .pipeline import rerun
    from .widgets import run_with_progress

    path = m.notebook_path(args.notebook)
    run_opts = m.run_options(args)
    run_opts.output = run_opts.output or str(default_output(path))
    engine = args.engine or "docker"
    refuse_run_conflicts(args.image, bool(getattr(args, "reconstruct", False)), engine, False)

    def work(reporter: Reporter, cancel: CancelToken) -> RunResult:
        prepared = None if args.image else m.prepare(args, path, reporter, cancel)
        return rerun(path, prepared, engine, run_opts, reporter, cancel, args.image)[0]

    result = run_with_progress(work, m.progress(f"envpack run {path.name}", args))
    return _run_view(result)


def _run_view(result: RunResult) -> FieldsView:
    from .widgets import FieldsView

    report = result.report
    cells = "\n".join(
        f"cell {c.index}: {c.status}"
        + (f" {c.ename}: {c.evalue}" if c.ename else "")
        + (f"\n{c.diff}" if c.diff else "")
        for c in report.cells
        if c.status not in {"same", "skipped"}
    )
    counts = ", ".join(f"{n} {s}" for s, n in sorted(report.summary.items()))
    headline = {
        "reproduced": "reproduced",
        "not-reproduced": "did not reproduce",
        "nothing-to-compare": "nothing to compare (no code cell had been executed)",
    }[report.verdict]
    return FieldsView(
        headline,
        {
            "cells": counts,
            "parameters": json.dumps(report.parameters) if report.parameters else None,
            "environment": (
                f"RECONSTRUCTED as of {report.as_of}: an educated guess, not what ran"
                if report.origin
                else None
            ),
            "run": report.run_status,
            "engine": report.engine,
            "image": report.image,
            "executed notebook": str(result.output_path),
            "details": cells or None,
        },
        # the message names the cell as JupyterLab numbers it; the 0-based index stays in .data
        warnings=[{k: v for k, v in w.items() if k != "cell"} for w in report.warnings],
        data=result,
    )


def verb_binder(m: EnvpackMagics, args: argparse.Namespace) -> FieldsView:
    """Binder link, badges and warnings; ``--write`` writes ``binder/`` first."""
    from .share.binder import binder_info, write_binder
    from .share.links import normalize_host
    from .widgets import FieldsView

    host = normalize_host(args.host)
    done = _prepared(m, args)
    path, spec = done.notebook, done.spec
    written = write_binder(path, spec=spec)["written"] if args.write else []
    info = binder_info(path, spec=spec, host=host, ref=args.ref, branch=args.branch)
    badges = info["badges"] or {}
    fields = {
        "link": info["link"] or "none (see the warnings)",
        "wrote": ", ".join(written) or None,
        "Markdown badge": badges.get("markdown"),
        "RST badge": badges.get("rst"),
    }
    return FieldsView("Binder", fields, info["warnings"], data=info)


def _engine_status(prepared: Prepared) -> dict[str, str]:
    from .errors import EngineError
    from .image.build import image_exists
    from .image.engine import connect
    from .pipeline import image_name

    try:
        client = connect()
    except EngineError as exc:
        return {
            "docker": f"not reachable: {exc.message} (snapshot, dockerfile and binder still work)",
            "image": image_name(prepared),
        }
    try:
        image = image_name(prepared, client)
        built = "built" if image_exists(client, image) else "not built yet (%envpack build)"
    finally:
        client.close()
    return {"docker": "reachable", "image": f"{image} — {built}"}


def verb_status(m: EnvpackMagics, args: argparse.Namespace) -> FieldsView:
    """Where things stand: notebook, environment, Docker engine, image, Binder link."""
    from .share.binder import binder_info
    from .widgets import FieldsView

    prepared = _prepared(m, args, building=True)
    path, spec = prepared.notebook, prepared.spec
    fields: dict[str, Any] = {
        "notebook": str(path),
        "python": f"{spec.python_version} ({spec.interpreter})",
        "environment": f"{len(spec.packages)} pinned packages, {len(spec.warnings)} warnings, "
        f"hash {spec.hash[:12]}",
    }
    fields.update(_engine_status(prepared))
    binder = binder_info(path, snapshot=False)
    fields["binder"] = binder["link"] or binder["warnings"][0]["message"]
    return FieldsView(f"envpack status of {path.name}", fields, data=fields)


def _submit_options(m: EnvpackMagics, args: argparse.Namespace) -> SubmitOptions:
    from .cluster.cli import submit_options

    return submit_options(args, m.envpack_config())


def verb_submit(m: EnvpackMagics, args: argparse.Namespace) -> FieldsView | TextView:
    """Build (in-process snapshot), push and start the notebook as a cluster job."""
    from .cluster.jobs import Submitted, submit
    from .widgets import FieldsView, TextView, run_with_progress

    path = m.notebook_path(args.notebook)
    opts, cfg = _submit_options(m, args), m.envpack_config()
    if args.dry_run:
        import yaml

        prepared = None if args.image else m.prepare(args, path)
        plan = submit(
            str(path), opts, image=args.image, prepared=prepared, dry_run=True, config=cfg
        )
        return TextView(yaml.safe_dump_all(plan.manifests, sort_keys=False).rstrip())

    def work(reporter: Reporter, cancel: CancelToken) -> Submitted:
        prepared = None if args.image else m.prepare(args, path, reporter, cancel)
        return submit(
            str(path),
            opts,
            image=args.image,
            prepared=prepared,
            reporter=reporter,
            cancel=cancel,
            wait=args.wait,
            config=cfg,
        )

    done = run_with_progress(work, m.progress(f"envpack submit {path.name}", args))
    state = (
        f"{done.status.state.value}: {done.status.message}"
        if done.status
        else "submitted (follow it with %envpack jobs)"
    )
    return FieldsView(
        f"job {done.record.id}",
        {
            "backend": done.record.backend,
            "image": done.record.image,
            "handle": done.record.handle,
            "state": state,
            "executed notebook": done.output_path,
        },
        data=done,
    )


def verb_jobs(m: EnvpackMagics, args: argparse.Namespace) -> TableView:
    """The submitted cluster jobs, their status refreshed."""
    from .cluster.jobs import JobIndex, refresh
    from .widgets import TableView

    index = JobIndex()
    rows = []
    for record in index.list(args.limit or 20):
        if not record.finished:
            try:
                record = refresh(record, index)
            except EnvpackError as exc:
                record.message = f"(status unknown: {exc.message})"
        rows.append(
            [record.id, record.backend, record.state, Path(record.notebook).name, record.message]
        )
    headline = f"{len(rows)} job(s)" if rows else "no jobs yet: %envpack submit"
    return TableView(headline, ["id", "backend", "state", "notebook", "message"], rows)


for _name, _handler in (
    ("snapshot", verb_snapshot),
    ("dockerfile", verb_dockerfile),
    ("build", verb_build),
    ("run", verb_run),
    ("binder", verb_binder),
    ("status", verb_status),
    ("submit", verb_submit),
    ("jobs", verb_jobs),
):
    register_verb(_name, _handler)


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext jupyter_envpack``: register ``%envpack`` (verbs added by :func:`register_verb`)."""
    ip.register_magics(EnvpackMagics)
