"""``jupyter envpack submit | jobs | logs | cancel | fetch``: cluster jobs from the command line.

Plugged into the core CLI through :func:`add_parser` (see ``jupyter_envpack/cli.py``). stdout holds
only results (the job id, YAML on ``--dry-run``, JSON with ``--json``); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError

if TYPE_CHECKING:
    from ..config import EnvPack
    from .jobs import SubmitOptions

PASSWORD_ENV = "ENVPACK_REGISTRY_PASSWORD"  # noqa: S105 - the variable name, not a password


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _registry_auth(args: argparse.Namespace) -> Any:
    from .registry import RegistryAuth

    if not getattr(args, "registry_user", None):
        return None
    if args.registry_password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = os.environ.get(PASSWORD_ENV, "")
    if not password:
        raise InputError(
            "--registry-user needs a password",
            hint=f"pipe it to --registry-password-stdin or set {PASSWORD_ENV}",
        )
    return RegistryAuth(args.registry_user, password)


#: ``SubmitOptions`` field → argparse dest of its flag (``None`` when not given).
_SUBMIT_FLAGS = {
    **{name: name for name in ("backend", "registry", "cell_timeout", "deadline", "output")},
    **{name: name for name in ("cpu", "memory", "cpu_request", "memory_request")},
    **{name: name for name in ("schedule", "timezone", "namespace", "kubeconfig")},
    **{name: name for name in ("partition", "account", "gpus", "runtime")},
    "constraints": "constraint",
    "kube_context": "context",
    "image_pull_secrets": "image_pull_secret",
}


def submit_options(args: argparse.Namespace, config: EnvPack | None = None) -> SubmitOptions:
    """:class:`~.jobs.SubmitOptions` from ``submit`` flags over ``c.EnvPack`` over defaults.

    Also used by ``%envpack submit``, whose parsed arguments have a subset of the flags.
    """
    from ..cli import envpack_config
    from ..execute.parameters import parse_cli_parameters

    flags = {field: getattr(args, dest, None) for field, dest in _SUBMIT_FLAGS.items()}
    return (
        (config or envpack_config(args))
        .submit_options(
            registry_auth=_registry_auth(args),
            parameters=parse_cli_parameters(getattr(args, "parameter", None)),
            **flags,
        )
        .validate()
    )


def cmd_submit(args: argparse.Namespace) -> int:
    """Build, push and submit the notebook; with ``--wait`` follow it and fetch the result."""
    from ..cli import build_options_from_args, envpack_config, make_reporter
    from .base import JobState
    from .jobs import submit

    config = envpack_config(args)
    opts = submit_options(args, config)
    reporter = make_reporter(args)
    from ..execute.sweep import rows_from

    rows = rows_from(args.sweep, args.sweep_file, opts.parameters)
    if rows:
        return _submit_sweep(args, opts, rows, config, reporter)
    done = submit(
        args.notebook,
        opts,
        image=args.image,
        build=build_options_from_args(args),
        python=args.python,
        kernel=args.kernel,
        reporter=reporter,
        dry_run=args.dry_run,
        wait=args.wait,
        config=config,
    )
    if args.dry_run:
        import yaml

        _out(yaml.safe_dump_all(done.manifests, sort_keys=False).rstrip())
        return 0
    if args.json:
        payload = done.record.to_json()
        payload["status"] = done.status.to_json() if done.status else None
        payload["output_path"] = str(done.output_path) if done.output_path else None
        _out(json.dumps(payload, indent=2))
    else:
        _out(done.record.id)
    if done.status is not None:
        sys.stderr.write(f"{done.status.state.value}: {done.status.message}\n")
        if done.status.state is not JobState.SUCCEEDED:
            sys.stderr.write(f"see its log: jupyter envpack logs {done.record.id}\n")
        return 0 if done.status.state is JobState.SUCCEEDED else 1
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    """List submitted jobs and sweeps (one row each), refreshing those not yet finished."""
    from .jobs import JobIndex

    index = JobIndex()
    listed = [_listed(record, index, args) for record in index.list(args.limit)]
    if args.json:
        _out(json.dumps([{**r.to_json(), **extra} for r, extra in listed], indent=2))
        return 0
    if not listed:
        sys.stderr.write("no jobs yet: submit one with `jupyter envpack submit NOTEBOOK`\n")
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title_justify="left")
    for column in ("id", "backend", "state", "notebook", "message"):
        table.add_column(column)
    for r, extra in listed:
        sweep = extra.get("sweep")
        name = Path(r.notebook).name + (f" (sweep of {sweep['members']})" if sweep else "")
        table.add_row(r.id, r.backend, r.state, name, r.message)
        for i, member in enumerate((sweep or {}).get("member_states") or []):
            table.add_row(f"  #{i}", "", member["state"], "", member["message"])
    Console(highlight=False).print(table)
    return 0


def _listed(record: Any, index: Any, args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """A record refreshed (unless --no-refresh), with its sweep's members when it is one."""
    from ..errors import EnvpackError
    from .jobs import backend_of, refresh
    from .sweeps import SWEEP_KEY, is_sweep, refresh_sweep

    states: dict[int, Any] | None = None
    try:
        if is_sweep(record.options):
            if args.members or not (record.finished or args.no_refresh):
                backend = None if record.backend == "local" else backend_of(record)
                states = refresh_sweep(record, index, backend)  # type: ignore[arg-type]
                record = index.get(record.id)
        elif not record.finished and not args.no_refresh:
            record = refresh(record, index)
    except EnvpackError as exc:
        record.message = f"(status unknown: {exc.message})"
    if not is_sweep(record.options):
        return record, {}
    sweep = {"members": record.options[SWEEP_KEY]["members"]}
    if args.members and states is not None:
        sweep["member_states"] = [states[i].to_json() for i in sorted(states)]
    return record, {"sweep": sweep}


def cmd_logs(args: argparse.Namespace) -> int:
    """Print a job's log (a sweep member's with ``--member``)."""
    from .base import collapse_result
    from .jobs import JobIndex, backend_of, logs
    from .sweeps import is_sweep, member_log

    record = JobIndex().get(args.job)
    if args.member is None and is_sweep(record.options):
        raise InputError(f"{record.id} is a sweep", hint="choose a run with --member N")
    if args.member is None:
        _out(logs(record, tail=args.tail, raw=args.raw).rstrip("\n"))
        return 0
    text = member_log(record, backend_of(record), args.member)
    text = "".join(text.splitlines(keepends=True)[-args.tail :]) if args.tail else text
    _out((text if args.raw else collapse_result(text)).rstrip("\n"))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel a job and remove its cluster objects."""
    from .jobs import JobIndex, cancel

    index = JobIndex()
    record = cancel(index.get(args.job), index)
    _out(f"{record.id} {record.state}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    """Write a finished job's executed notebook."""
    from .jobs import JobIndex, fetch, refresh
    from .sweeps import is_sweep

    index = JobIndex()
    record = refresh(index.get(args.job), index)
    if is_sweep(record.options):
        raise InputError(
            f"{record.id} is a sweep: its notebooks are written by `submit --sweep --wait`",
            hint="see a run's log with `jupyter envpack logs ID --member N`",
        )
    path = fetch(record, index=index, output=Path(args.output) if args.output else None)
    _out(str(path))
    return 0


def _submit_sweep(
    args: argparse.Namespace, opts: Any, rows: list[Any], config: Any, reporter: Any
) -> int:
    """One Slurm job array, Swarm job or Kubernetes Indexed Job for the whole sweep; with
    ``--wait``, its notebooks and summary."""
    from ..cli import build_options_from_args
    from ..execute.parameters import parameters_cell_source
    from ..execute.sweep import sweep_folder, write_summary
    from .jobs import image_for, make_job_spec, new_job_id, open_backend, pushed_reference

    if opts.backend not in ("slurm", "swarm", "kubernetes"):
        raise InputError(
            f"--sweep on {opts.backend} is not available yet",
            hint="use --backend slurm, swarm or kubernetes, or `jupyter envpack run --sweep`",
        )
    backend: Any = open_backend(opts.backend, opts.backend_options(), config)
    if not args.dry_run:
        backend.check()
    local = args.image or image_for(
        args.notebook,
        build=build_options_from_args(args),
        python=args.python,
        kernel=args.kernel,
        reporter=reporter,
        dry_run=args.dry_run,
    )
    reference = pushed_reference(local, opts, reporter=reporter, dry_run=args.dry_run)
    spec = make_job_spec(new_job_id(), args.notebook, reference, replace(opts, parameters={}))
    cells = [parameters_cell_source(row) for row in rows]
    sweep = _sweep_driver(opts.backend)
    if args.dry_run:
        _out(sweep.render(backend, spec, cells, args.max_parallel))
        return 0
    index = _index_sweep(spec, opts, args, len(rows))
    try:
        handle = sweep.submit(backend, spec, cells, args.max_parallel)
    except Exception as exc:
        index.mark(spec.job_id, "failed", "submit-failed", getattr(exc, "message", str(exc))[:500])
        raise
    index.set_handle(spec.job_id, handle)
    reporter(_event(f"submitted sweep {spec.job_id} of {len(rows)} runs ({opts.backend} {handle})"))
    if not args.wait:
        _out(spec.job_id)
        return 0
    folder = sweep_folder(args.notebook, args.output)
    runs = sweep.follow(
        backend,
        handle,
        rows,
        folder=folder,
        stem=Path(args.notebook).stem,
        timeout=opts.deadline * len(rows) + 600,
        reporter=reporter,
    )
    from .base import JobState, JobStatus
    from .sweeps import summarize

    states = {r.index: JobStatus(JobState(r.state)) for r in runs}
    index.record_status(spec.job_id, summarize(states, len(rows)))
    _out(str(write_summary(folder / "summary.csv", runs)))
    return 0 if all(r.state == "succeeded" for r in runs) else 1


def _index_sweep(spec: Any, opts: Any, args: argparse.Namespace, members: int) -> Any:
    """Record the sweep in the job index before the cluster is contacted; return the index."""
    from .jobs import JobIndex
    from .sweeps import index_sweep, sweep_options

    options = {
        "backend": opts.backend_options(),
        "deadline": opts.deadline,
        "sweep": sweep_options(members, args.max_parallel),
    }
    index_sweep(spec.job_id, opts.backend, str(args.notebook), spec.image, options)
    return JobIndex()


def _event(message: str) -> Any:
    from ..events import ProgressEvent

    return ProgressEvent("sweep", message, "info")


def _sweep_driver(name: str) -> Any:
    """render / submit / follow of a sweep on backend ``name``."""
    from types import SimpleNamespace

    if name == "slurm":
        from .slurm_sweep import follow_slurm_sweep

        return SimpleNamespace(
            render=lambda b, spec, cells, m: b.render_script(spec, cells, m),
            submit=lambda b, spec, cells, m: b.submit_sweep(spec, cells, m),
            follow=follow_slurm_sweep,
        )
    import yaml

    if name == "kubernetes":
        from . import k8s_sweep

        return SimpleNamespace(
            render=lambda b, spec, cells, m: yaml.safe_dump(
                k8s_sweep.render_sweep(b, spec, cells, m), sort_keys=False
            ),
            submit=k8s_sweep.submit_sweep,
            follow=k8s_sweep.follow_k8s_sweep,
        )
    from . import swarm_sweep

    return SimpleNamespace(
        render=lambda b, spec, cells, m: yaml.safe_dump(
            swarm_sweep.make_sweep_service_spec(b._with_defaults(spec), cells, m), sort_keys=False
        ),
        submit=lambda b, spec, cells, m: swarm_sweep.submit_sweep(
            b, b._with_defaults(spec), cells, m
        ),
        follow=swarm_sweep.follow_swarm_sweep,
    )


def _add_submit(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from ..cli import add_build_arguments, add_environment_arguments, add_run_arguments

    p = sub.add_parser(
        "submit",
        help="run the notebook on Docker Swarm, Kubernetes or Slurm",
        description="Build the notebook's image, push it to a registry and run it "
        "as a cluster job (a CronJob with --schedule).",
    )
    p.add_argument("notebook")
    p.add_argument(
        "--backend", help="swarm, kubernetes or slurm (default: c.EnvPack.default_backend)"
    )
    p.add_argument(
        "--registry",
        metavar="HOST[:PORT][/NS]",
        help="registry the cluster pulls from (default: c.EnvPack.registry)",
    )
    p.add_argument(
        "--registry-user",
        metavar="NAME",
        help=f"registry user (password from stdin or ${PASSWORD_ENV}); default: "
        "your docker config's credentials",
    )
    p.add_argument(
        "--registry-password-stdin",
        action="store_true",
        help="read the registry password from the first line of stdin",
    )
    p.add_argument("--image", metavar="REF", help="submit this local image instead of building")
    p.add_argument(
        "--schedule",
        metavar="CRON",
        help='5-field cron line, e.g. "0 6 * * *" (Kubernetes CronJob)',
    )
    p.add_argument("--timezone", metavar="TZ", help="IANA time zone of --schedule")
    p.add_argument("--cpu", type=float, metavar="CORES", help="CPU limit")
    p.add_argument(
        "--cpu-request",
        type=float,
        metavar="CORES",
        help="CPU reserved for the job (Swarm reservation, Kubernetes request)",
    )
    p.add_argument(
        "--memory-request",
        metavar="SIZE",
        help="memory reserved for the job (default: the --memory limit on Kubernetes)",
    )
    p.add_argument(
        "--constraint",
        action="append",
        metavar="EXPR",
        help="Swarm placement constraint, e.g. node.role==worker (repeatable)",
    )
    p.add_argument("--namespace", help="Kubernetes namespace")
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig file")
    p.add_argument(
        "--image-pull-secret",
        action="append",
        metavar="NAME",
        help="name of a Kubernetes pull secret (repeatable)",
    )
    p.add_argument("--partition", help="Slurm partition")
    p.add_argument("--account", help="Slurm account")
    p.add_argument(
        "--runtime",
        choices=("docker", "podman", "apptainer"),
        help="container runtime on the Slurm node (default: c.EnvPack.backend_options)",
    )
    p.add_argument(
        "--wait",
        action="store_true",
        help="follow the job to its end and fetch the executed notebook",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the manifests / service spec as YAML; contact no cluster",
    )
    p.add_argument("--json", action="store_true", help="print the job record as JSON")
    add_environment_arguments(p)
    add_build_arguments(p)
    add_run_arguments(p)
    p.set_defaults(func=cmd_submit)


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register the cluster verbs on the core CLI."""
    _add_submit(subparsers)
    p = subparsers.add_parser("jobs", help="list cluster jobs and sweeps")
    p.add_argument("--limit", type=int, default=50, help="how many (newest first)")
    p.add_argument(
        "--members", action="store_true", help="one row per sweep member under its sweep"
    )
    p.add_argument("--no-refresh", action="store_true", help="do not ask the clusters")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_jobs)
    p = subparsers.add_parser("logs", help="print a cluster job's log")
    p.add_argument("job", help="job id (or a unique prefix)")
    p.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    p.add_argument("--member", type=int, metavar="I", help="a sweep's run I (0-based)")
    p.add_argument(
        "--raw",
        action="store_true",
        help="show the base64 result block instead of one line about it",
    )
    p.set_defaults(func=cmd_logs)
    p = subparsers.add_parser("cancel", help="cancel a cluster job")
    p.add_argument("job", help="job id (or a unique prefix)")
    p.set_defaults(func=cmd_cancel)
    p = subparsers.add_parser("fetch", help="write a cluster job's executed notebook")
    p.add_argument("job", help="job id (or a unique prefix)")
    p.add_argument("--output", metavar="PATH", help="where (default: <name>.envpack.ipynb)")
    p.set_defaults(func=cmd_fetch)
