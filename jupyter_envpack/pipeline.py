"""The one place that sequences the stages: snapshot → build → rerun → report.

Every surface (the CLI, the ``%envpack`` magics, the server's operation kinds, the cluster's
``submit`` and the pytest plugin) calls these functions and never a stage itself:

- :func:`prepare`: the snapshot (or the lock beside the notebook), reported the same way
  everywhere (files summary, then each warning), with the lock's base image and hashes applied
  to the build options;
- :func:`build` / :func:`image_name`: the image, built or only named;
- :func:`rerun`: the ONE place that chooses the engine, building first when needed;
- :func:`containerise`: all of it in one call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError
from .events import CancelToken, ProgressEvent, Reporter, null_reporter
from .image.options import BuildOptions
from .snapshot import EnvSpec, IndexOptions, ReconstructOptions, SnapshotOptions
from .snapshot.lock import snapshot_or_lock

if TYPE_CHECKING:  # the build and run modules (docker SDK) load when a stage needs them
    from .execute import RunOptions, RunResult
    from .image import BuildResult
    from .snapshot.lock import Lock
    from .snapshot.probe import Environment

ENGINES = ("docker", "venv")
"""Where a rerun happens: the notebook's image on the Docker engine, or a fresh local venv."""


@dataclass(frozen=True)
class Prepared:
    """A notebook's snapshot and the build options that go with it (the lock's pins applied)."""

    notebook: Path
    spec: EnvSpec
    build: BuildOptions


def prepare(
    notebook: str | os.PathLike[str],
    build: BuildOptions | None = None,
    *,
    python: str | None = None,
    kernel: str | None = None,
    probe: Environment | None = None,
    snapshot: SnapshotOptions | None = None,
    use_lock: bool = True,
    lock_base: bool | None = None,
    max_bytes: int | None = None,
    reporter: Reporter = null_reporter,
    cancel: CancelToken | None = None,
) -> Prepared:
    """Snapshot ``notebook`` (``probe``: an environment probed already, e.g. the magics' kernel).

    ``<stem>.envpack.lock`` beside the notebook replaces the kernel's environment when
    ``use_lock``; its base image replaces ``build.base_image`` when ``lock_base`` (default: when
    ``build`` names none). ``snapshot`` defaults to the build's package index settings.
    """
    build = build or BuildOptions()
    if snapshot is None:
        index = IndexOptions(build.index_url, build.extra_index_urls, build.ca_bundle)
        snapshot = SnapshotOptions(index=index)
    path = Path(notebook)
    reporter(ProgressEvent("snapshot", f"reading {path.name} and its environment", "step"))
    spec, lock = snapshot_or_lock(path, python, kernel, use_lock, snapshot, probe, max_bytes)
    if lock is not None:
        reporter(ProgressEvent("snapshot", f"pins from {path.stem}.envpack.lock", "info"))
        build = _with_lock(
            build, lock, build.base_image is None if lock_base is None else lock_base
        )
    report_snapshot(spec, reporter)
    if cancel is not None:
        cancel.raise_if_cancelled()
    return Prepared(path, spec, build)


def _with_lock(build: BuildOptions, lock: Lock, base: bool) -> BuildOptions:
    if base and lock.base_image:
        build = replace(build, base_image=lock.base_image)
    return replace(build, lock_hashes=lock.hashes)  # a fetched wheel must have one of them


def report_snapshot(spec: EnvSpec, reporter: Reporter) -> None:
    """Report what a snapshot found: pins, shipped files, then each warning (the one loop)."""
    pinned = f"{len(spec.packages)} distributions pinned for Python {spec.python_version}"
    reporter(ProgressEvent("snapshot", pinned, "info"))
    reporter(ProgressEvent("snapshot", spec.files_summary(), "info"))
    for finding in spec.warnings:
        reporter(ProgressEvent("snapshot", f"{finding.code}: {finding.message}", "warning"))


def build(
    prepared: Prepared,
    reporter: Reporter = null_reporter,
    cancel: CancelToken | None = None,
    client: Any = None,
) -> BuildResult:
    """Build (or find in the cache) the image of ``prepared``."""
    from .image.build import build_image

    return build_image(prepared.spec, prepared.notebook, prepared.build, reporter, cancel, client)


def image_name(prepared: Prepared, client: Any = None) -> str:
    """The tag :func:`build` gives (or gave) ``prepared``, without fetching or building."""
    from .image.build import image_reference

    return image_reference(prepared.spec, prepared.notebook, prepared.build, client)


def rerun(
    notebook: str | os.PathLike[str],
    prepared: Prepared | None,
    engine: str = "docker",
    run: RunOptions | None = None,
    reporter: Reporter = null_reporter,
    cancel: CancelToken | None = None,
    image: str | None = None,
    client: Any = None,
) -> tuple[RunResult, BuildResult | None]:
    """Rerun ``notebook`` on ``engine``: the ONE place that chooses the engine.

    ``docker``: build ``prepared`` (unless ``image`` is given) and run the image; ``venv``: a
    fresh virtualenv of ``prepared``'s lock, no engine needed. ``notebook`` may be a copy run
    from elsewhere: the local files come from ``prepared.notebook``'s folder.
    """
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}", hint=f"use one of {', '.join(ENGINES)}")
    if engine == "venv":
        venv_result = _rerun_venv(Path(notebook), prepared, run, reporter, cancel, image)
        return mark_origin(venv_result, prepared), None
    if client is None:
        from .image.engine import connect

        client = connect()
    built = None
    if image is None:
        if prepared is None:
            raise InputError("nothing to run: no image and no snapshot", hint="give an image")
        built = build(prepared, reporter, cancel, client)
        image = built.image
    from .execute.run import RunOptions, run_notebook

    result = run_notebook(image, Path(notebook), run or RunOptions(), reporter, cancel, client)
    return mark_origin(result, prepared), built


def mark_origin(result: RunResult, prepared: Prepared | EnvSpec | None) -> RunResult:
    """Say in the report when the environment it ran in was reconstructed (not what ran)."""
    spec = prepared.spec if isinstance(prepared, Prepared) else prepared
    if spec is not None and spec.reconstructed:
        result.report.origin = spec.origin
        result.report.as_of = str((spec.reconstruction or {}).get("as_of_used") or "") or None
    return result


def _rerun_venv(
    notebook: Path,
    prepared: Prepared | None,
    run: RunOptions | None,
    reporter: Reporter,
    cancel: CancelToken | None,
    image: str | None,
) -> RunResult:
    if image is not None or prepared is None:
        raise InputError("--image needs a container engine", hint="drop --image or --engine")
    from .execute.venv import run_notebook_venv

    origin = prepared.notebook if prepared.notebook != notebook else None
    return run_notebook_venv(prepared.spec, notebook, run, reporter, cancel, prepared.build, origin)


@dataclass
class Containerised:
    """Everything the main job produced."""

    spec: EnvSpec
    build: BuildResult | None  # None with the venv engine (nothing is built)
    run: RunResult | None

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "snapshot": self.spec.to_json(),
            "build": self.build.to_json() if self.build else None,
            "run": self.run.to_json() if self.run else None,
        }


def containerise(
    path: str | os.PathLike[str],
    python: str | None = None,
    kernel: str | None = None,
    build: BuildOptions | None = None,
    run: RunOptions | None = None,
    reporter: Reporter = null_reporter,
    cancel: CancelToken | None = None,
    rerun: bool = True,
    client: Any = None,
    snapshot: SnapshotOptions | None = None,
    rerun_path: str | os.PathLike[str] | None = None,
    use_lock: bool = True,
    engine: str = "docker",
    reconstruct: ReconstructOptions | None = None,
) -> Containerised:
    """Snapshot ``path`` in its kernel's environment, build its image and (by default) rerun it.

    ``snapshot`` defaults to the build's package index settings and the default data-file rules.
    ``<stem>.envpack.lock`` beside the notebook replaces the kernel's environment unless
    ``use_lock`` is false (its base image is the default one); ``rerun_path`` is a copy of the
    notebook to rerun instead (same name; the pytest plugin blanks its skipped cells).
    ``engine`` is where the rerun happens (:data:`ENGINES`): ``venv`` builds no image.
    ``reconstruct``: no kernel environment, reconstruct one (issue 13.2; the report says so and
    compares with the notebook's stored outputs).
    """
    if engine == "venv" and not rerun:
        raise InputError("the venv engine builds no image", hint="rerun, or use engine 'docker'")
    if reconstruct is not None:
        build = build or BuildOptions()
        index = IndexOptions(build.index_url, build.extra_index_urls, build.ca_bundle)
        base = reconstruct.base_image or build.base_image
        snapshot = replace(
            snapshot or SnapshotOptions(index=index),
            reconstruct=replace(reconstruct, base_image=base),
        )
    prepared = prepare(
        path, build, python=python, kernel=kernel, snapshot=snapshot, use_lock=use_lock,
        reporter=reporter, cancel=cancel,
    )  # fmt: skip
    if not rerun:
        return Containerised(prepared.spec, _build(prepared, reporter, cancel, client), None)
    target = rerun_path if rerun_path is not None else path
    result, built = _rerun(target, prepared, engine, run, reporter, cancel, client=client)
    return Containerised(prepared.spec, built, result)


_rerun, _build = rerun, build  # containerise's own arguments shadow these functions inside it
