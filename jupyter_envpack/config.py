"""``EnvPack``: the one configurable object shared by the server, the CLI and the magics.

Admins set it like any Jupyter option (``c.EnvPack.base_image = "python:3.11-slim"`` in
``jupyter_server_config.py``, or ``{"EnvPack": {...}}`` in a JSON config file). The server builds it
with ``EnvPack(parent=extension_app)``; the CLI and magics call :func:`load_envpack_config`, which
reads the same Jupyter config files.
"""

from __future__ import annotations

import dataclasses
import importlib
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from traitlets import (
    Bool,
    Dict,
    Enum,
    Float,
    Integer,
    List,
    Type,
    Unicode,
    Union,
    default,
    observe,
    validate,
)
from traitlets.config import Config, Configurable

from . import defaults

if TYPE_CHECKING:
    from .cluster.jobs import SubmitOptions
    from .execute import RunOptions
    from .execute.limits import RunLimits
    from .image import BuildOptions
    from .snapshot import SnapshotOptions

T = TypeVar("T")

#: Config file names read by :func:`load_envpack_config` (server config first, ours last wins).
CONFIG_FILE_NAMES = ("jupyter_server_config", "jupyter_envpack_config")

#: Entry-point group of cluster backends: envpack's own (swarm, kubernetes, slurm, declared in
#: pyproject.toml) and third-party ones, registered the same way.
BACKEND_GROUP = "jupyter_envpack.backends"

#: Extra operation kinds registered with the server's OperationManager (see docs/api.md).
DEFAULT_OPERATION_KINDS = {
    "job": "jupyter_envpack.cluster.operation:job_kind",
}

#: Options fields whose ``c.EnvPack`` trait has another name, by options class name. Any other
#: field takes the trait of the same name when there is one (so a new trait needs no code here).
OPTION_TRAITS: dict[str, dict[str, str]] = {
    "BuildOptions": {"deadline": "build_deadline"},
    "RunOptions": {"deadline": "run_deadline"},
    "RunLimits": {
        "memory": "run_memory",
        "cpus": "run_cpus",
        "pids": "run_pids",
        "read_only": "run_read_only",
    },
    "SubmitOptions": {"deadline": "run_deadline", "backend": "default_backend"},
    "DataOptions": {
        "max_bytes": "max_data_bytes",
        "include": "include_data",
        "exclude": "exclude_data",
    },
}


def _optional_text(help_text: str) -> Any:  # a traitlets Unicode (generic in stubs)
    return Unicode(None, allow_none=True, help=help_text).tag(config=True)


def _seconds(value: float, help_text: str) -> Any:  # a traitlets Float (generic in stubs)
    return Float(value, help=f"{help_text} In seconds (default {value:g}).").tag(config=True)


def installed_backends() -> dict[str, str]:
    """Return the cluster backends registered as entry points, as ``{name: "module:Class"}``.

    This is the one registry of backends: ``c.EnvPack.cluster_backends`` defaults to it and
    may add or replace names; nothing is imported until a backend is used.
    """
    from importlib.metadata import entry_points

    return {ep.name: ep.value for ep in entry_points(group=BACKEND_GROUP)}


class EnvPack(Configurable):
    """Configuration of jupyter-envpack (every trait is ``c.EnvPack.<name>``)."""

    base_image = _optional_text(
        "Base image of every build (e.g. python:3.11-slim or an internal mirror). "
        "None: python:X.Y-slim for the notebook's Python version."
    )
    kernel = _optional_text(
        "Kernelspec whose interpreter is probed for installed packages. "
        "None: the notebook's own kernelspec, else the current interpreter."
    )
    registry = _optional_text(
        "Registry that images are pushed to for cluster jobs (host[:port][/namespace])."
    )
    ca_bundle = _optional_text(
        "Path of a CA bundle (PEM) that pip inside the build trusts (TLS-intercepting proxies)."
    )
    index_url = _optional_text(
        "Package index (PEP 503) the wheels are fetched from on this machine; default: your pip's."
    )
    engine_url = _optional_text(
        "Container engine API address, e.g. unix:///run/podman/podman.sock for Podman. "
        "None: DOCKER_HOST, else the default Docker socket."
    )
    binder_host = _optional_text(
        "BinderHub that Binder links and badges point at (https; default https://mybinder.org)."
    )
    extra_index_urls = List(
        Unicode(), default_value=[], help="Extra package index URLs used by pip inside the build."
    ).tag(config=True)
    layers = Enum(
        list(defaults.LAYOUTS),
        defaults.LAYOUTS[0],
        help="Environment layout of images: 'single' writes the environment in one layer (the "
        "fastest first build); 'shared' gives each heavy distribution (wheel >= 4 MiB) a layer "
        "of its own, in an order sibling notebooks share: a slower first build, and siblings' "
        "builds, registry pushes and cluster pulls reuse those layers (docs/performance.md).",
    ).tag(config=True)
    build_deadline = _seconds(defaults.BUILD_DEADLINE, "Overall deadline of one build.")
    idle_timeout = _seconds(defaults.IDLE_TIMEOUT, "A build step silent this long fails.")
    run_deadline = _seconds(
        defaults.RUN_DEADLINE, "Overall deadline of one notebook run (and of a cluster job)."
    )
    cell_timeout = _seconds(defaults.CELL_TIMEOUT, "Timeout of one cell during a run.")
    # Resource limits of every rerun container (RELIABILITY L4; shown in the report)
    run_memory = Unicode(
        defaults.RUN_MEMORY, help="Memory limit of a rerun (no swap), e.g. 2g or 512m."
    ).tag(config=True)
    run_cpus = Float(defaults.RUN_CPUS, min=0.01, help="CPU quota of a rerun, in cores.").tag(
        config=True
    )
    run_pids = Integer(
        defaults.RUN_PIDS, min=16, help="Most processes and threads in a rerun."
    ).tag(config=True)
    run_read_only = Bool(
        True, help="Read-only root filesystem for reruns (home and /tmp stay writable)."
    ).tag(config=True)
    gpus = Unicode(
        None,
        allow_none=True,
        help="GPUs of every rerun ('all' or a count, as docker run --gpus) and cluster job "
        "(a count: Kubernetes nvidia.com/gpu, Swarm generic resources, Slurm --gres=gpu:N). "
        "None: no GPU.",
    ).tag(config=True)
    concurrency_limit = Integer(
        2, min=1, help="How many operations (builds, runs, jobs) run at once; more are queued."
    ).tag(config=True)
    database_path = Unicode(
        help="SQLite file that keeps operations across server restarts. "
        "Default: <jupyter data dir>/envpack/operations.sqlite."
    ).tag(config=True)
    max_notebook_size = Integer(
        50 * 1024 * 1024,
        min=1,
        help="Largest notebook (bytes) the server accepts; larger ones get 413.",
    ).tag(config=True)
    max_request_body = Integer(
        256 * 1024,
        min=1024,
        help="Largest JSON request body (bytes) of the REST API; larger ones get 413.",
    ).tag(config=True)
    max_log_events = Integer(
        20000,
        min=100,
        help="Log lines kept per operation; later lines are dropped (steps and progress are "
        "always kept).",
    ).tag(config=True)
    # --- data files shipped beside the notebook (issue 9.3)
    max_data_bytes = Integer(
        200 * 1024 * 1024,
        min=0,
        help="Total size (bytes) of the data files shipped in an image; beyond it files are "
        "left out with a large-data-files warning.",
    ).tag(config=True)
    include_data = List(
        Unicode(), default_value=[], help="Globs (relative to the notebook) of files to ship too."
    ).tag(config=True)
    exclude_data = List(
        Unicode(), default_value=[], help="Globs (relative to the notebook) of files never shipped."
    ).tag(config=True)
    retention_days = Float(
        30.0,
        help="Finished operations older than this many days are forgotten when the server "
        "starts (0: keep forever).",
    ).tag(config=True)
    cluster_backends = Dict(
        key_trait=Unicode(),
        value_trait=Union([Unicode(), Type(klass=object)]),
        help="Cluster backends by name: a class or a 'module:Class' import string. Default: "
        "every backend installed under the 'jupyter_envpack.backends' entry-point group.",
    ).tag(config=True)
    backend_options = Dict(
        key_trait=Unicode(),
        value_trait=Dict(),
        help="Default constructor options per backend, under what a job asks for, e.g. "
        "{'slurm': {'runtime': 'podman', 'partition': 'gpu', 'output_dir': '/shared/envpack'}}.",
    ).tag(config=True)
    default_backend = Unicode(
        "swarm", help="Name of the cluster backend used when a job names none."
    ).tag(config=True)
    operation_kinds = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        help="Extra operation kinds: kind name -> 'module:attribute' of a "
        "jupyter_envpack.operations.Kind. A missing module is skipped with a log line.",
    ).tag(config=True)
    runners = Dict(
        key_trait=Unicode(),
        value_trait=Unicode(),
        help="Deprecated name of operation_kinds (still accepted, with a warning).",
    ).tag(config=True)

    @default("database_path")
    def _default_database_path(self) -> str:
        from jupyter_core.paths import jupyter_data_dir

        return str(Path(jupyter_data_dir()) / "envpack" / "operations.sqlite")

    @default("cluster_backends")
    def _default_cluster_backends(self) -> dict[str, Any]:
        return installed_backends()

    @default("operation_kinds")
    def _default_operation_kinds(self) -> dict[str, str]:
        return dict(DEFAULT_OPERATION_KINDS)

    @observe("runners")
    def _runners_renamed(self, change: Any) -> None:
        warnings.warn(
            "c.EnvPack.runners is deprecated: name it c.EnvPack.operation_kinds",
            FutureWarning,
            stacklevel=2,
        )
        self.operation_kinds = dict(change["new"])

    @validate("extra_index_urls")
    def _validate_urls(self, proposal: Any) -> list[str]:
        return [str(u) for u in proposal["value"] if str(u).strip()]

    def backend_registry(self) -> dict[str, Any]:
        """The installed backends (entry points) with ``cluster_backends`` added on top."""
        return {**installed_backends(), **self.cluster_backends}

    def backend_class(self, name: str | None = None) -> type:
        """Return the cluster backend class called ``name`` (default: ``default_backend``)."""
        from .errors import InputError

        name = name or self.default_backend
        known = self.backend_registry()
        target = known.get(name)
        if target is None:
            raise InputError(
                f"unknown cluster backend {name!r}",
                hint=f"choose one of: {', '.join(sorted(known))}",
            )
        return target if isinstance(target, type) else import_string(target)

    def options(self, cls: type[T], **overrides: Any) -> T:
        """Return an options dataclass ``cls`` built from this config, ``overrides`` on top.

        The one place where every surface turns config + flags into options: a field takes the
        trait of its name (or the one in :data:`OPTION_TRAITS`) when it is set (not ``None``),
        then each override that is not ``None``; the rest keep the dataclass defaults
        (:mod:`jupyter_envpack.defaults`). Lists become tuples where the field holds a tuple.

        Parameters
        ----------
        cls
            A dataclass such as ``BuildOptions``, ``RunOptions`` or ``SubmitOptions``.
        **overrides
            Flags or request options by field name; ``None`` means "not given".
        """
        renames = OPTION_TRAITS.get(cls.__name__, {})
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            trait = renames.get(f.name, f.name)
            if self.has_trait(trait) and self.trait_metadata(trait, "config"):
                values[f.name] = getattr(self, trait)
        values.update({k: v for k, v in overrides.items() if v is not None})
        kept = {k: v for k, v in values.items() if v is not None}
        return cls(**{k: _as_field(cls, k, v) for k, v in kept.items()})

    def build_options(self, **overrides: Any) -> BuildOptions:
        """Return the core's ``BuildOptions`` (see :meth:`options`)."""
        from .image import BuildOptions

        return self.options(BuildOptions, **overrides)

    def snapshot_options(self, **overrides: Any) -> SnapshotOptions:
        """Return the core's ``SnapshotOptions`` (see :meth:`options`).

        ``overrides`` name fields of ``DataOptions`` (``max_bytes``, ``include``, ``exclude``) or of
        ``IndexOptions`` (``index_url``, ``extra_index_urls``, ``ca_bundle``).
        """
        from .snapshot import DataOptions, IndexOptions, SnapshotOptions

        data_fields = {f.name for f in dataclasses.fields(DataOptions)}
        data = {k: v for k, v in overrides.items() if k in data_fields}
        index = {k: v for k, v in overrides.items() if k not in data_fields}
        return SnapshotOptions(
            data=self.options(DataOptions, **data), index=self.options(IndexOptions, **index)
        )

    def run_options(self, **overrides: Any) -> RunOptions:
        """Return the core's ``RunOptions`` (see :meth:`options`)."""
        from .execute import RunOptions

        limits = self.run_limits(
            cpus=overrides.pop("cpus", None),
            pids=overrides.pop("pids", None),
            gpus=overrides.pop("gpus", None),
        )
        if overrides.get("limits") is None:
            overrides["limits"] = limits
        return self.options(RunOptions, **overrides)

    def submit_options(self, **overrides: Any) -> SubmitOptions:
        """Return a cluster job's ``SubmitOptions`` (see :meth:`options`)."""
        from .cluster.jobs import SubmitOptions

        return self.options(SubmitOptions, **overrides)

    def run_limits(self, **overrides: Any) -> RunLimits:
        """Return the rerun container's :class:`~.execute.limits.RunLimits` (see :meth:`options`)."""
        from .execute.limits import RunLimits

        return self.options(RunLimits, **overrides)


def _as_field(cls: type, name: str, value: Any) -> Any:
    """``value`` as field ``name`` of ``cls`` stores it (a list becomes a tuple for tuple fields)."""
    default = {f.name: f.default for f in dataclasses.fields(cls)}.get(name)
    return tuple(value) if isinstance(value, list) and isinstance(default, tuple) else value


def import_string(target: str) -> Any:
    """Import ``"package.module:attribute"`` (or ``package.module.attribute``)."""
    module_name, sep, attr = target.partition(":")
    if not sep:
        module_name, _, attr = target.rpartition(".")
    module = importlib.import_module(module_name)
    return getattr(module, attr)


def load_envpack_config(config_dirs: list[str] | None = None) -> EnvPack:
    """Return an ``EnvPack`` configured from the Jupyter config files (for the CLI and magics).

    Parameters
    ----------
    config_dirs
        Directories to read, lowest priority first; default ``jupyter_config_path()`` reversed
        (so the user's own directory wins, as in Jupyter itself).
    """
    from jupyter_core.paths import jupyter_config_path
    from traitlets.config.loader import JSONFileConfigLoader, PyFileConfigLoader

    dirs = config_dirs if config_dirs is not None else list(reversed(jupyter_config_path()))
    merged = Config()
    for folder in dirs:
        for name in CONFIG_FILE_NAMES:
            for loader_cls, ext in ((JSONFileConfigLoader, ".json"), (PyFileConfigLoader, ".py")):
                if not (Path(folder) / (name + ext)).is_file():
                    continue
                merged.merge(loader_cls(name + ext, path=folder).load_config())
    return EnvPack(config=merged)
