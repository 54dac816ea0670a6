"""The main job in one call: snapshot → build → rerun → report."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .errors import InputError
from .events import CancelToken, ProgressEvent, Reporter, null_reporter
from .execute import RunOptions, RunResult, run_notebook
from .image import BuildOptions, BuildResult, build_image
from .snapshot import EnvSpec, IndexOptions, ReconstructOptions, SnapshotOptions
from .snapshot.lock import snapshot_or_lock

ENGINES = ("docker", "venv")
"""Where a rerun happens: the notebook's image on the Docker engine, or a fresh local venv."""


def rerun(
    spec: EnvSpec,
    nb_path: str | os.PathLike[str],
    engine: str = "docker",
    build: BuildOptions | None = None,
    run: RunOptions | None = None,
    reporter: Reporter = null_reporter,
    cancel: CancelToken | None = None,
    image: str | None = None,
    client: Any = None,
    files_from: str | os.PathLike[str] | None = None,
) -> tuple[RunResult, BuildResult | None]:
    """Rerun the notebook of ``spec`` on ``engine``: the ONE place that chooses the engine.

    ``docker``: build the image (unless ``image`` is given) and run it; ``venv``: a fresh
    virtualenv of the lock, no engine needed (``image`` must then be None). ``files_from`` is
    the notebook whose folder holds the local files when ``nb_path`` is a copy run from elsewhere.
    """
    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}", hint=f"use one of {', '.join(ENGINES)}")
    if engine == "venv":
        if image is not None:
            raise InputError("--image needs a container engine", hint="drop --image or --engine")
        from .execute.venv import run_notebook_venv

        origin = Path(files_from) if files_from is not None else None
        result = run_notebook_venv(spec, Path(nb_path), run, reporter, cancel, build, origin)
        return mark_origin(result, spec), None
    if client is None:
        from .image.engine import connect

        client = connect()
    built = None
    if image is None:
        built = build_image(spec, Path(nb_path), build or BuildOptions(), reporter, cancel, client)
        image = built.image
    result = run_notebook(image, Path(nb_path), run or RunOptions(), reporter, cancel, client)
    return mark_origin(result, spec), built


def mark_origin(result: RunResult, spec: EnvSpec) -> RunResult:
    """Say in the report when the environment it ran in was reconstructed (not what ran)."""
    if spec.reconstructed:
        result.report.origin = spec.origin
        result.report.as_of = str((spec.reconstruction or {}).get("as_of_used") or "") or None
    return result


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
    build = build or BuildOptions()
    if snapshot is None:
        index = IndexOptions(build.index_url, build.extra_index_urls, build.ca_bundle)
        snapshot = SnapshotOptions(index=index)
    if reconstruct is not None:
        base = reconstruct.base_image or build.base_image
        snapshot = replace(snapshot, reconstruct=replace(reconstruct, base_image=base))
    reporter(ProgressEvent("snapshot", f"reading {os.fspath(path)} and its environment", "step"))
    spec, lock = snapshot_or_lock(path, python, kernel, use_lock=use_lock, options=snapshot)
    if lock is not None:
        reporter(ProgressEvent("snapshot", f"pins from {Path(path).stem}.envpack.lock", "info"))
        if build.base_image is None and lock.base_image:
            build = replace(build, base_image=lock.base_image)
        build = replace(build, lock_hashes=lock.hashes)
    reporter(
        ProgressEvent(
            "snapshot",
            f"{len(spec.packages)} distributions pinned for Python {spec.python_version}",
            "info",
        )
    )
    reporter(ProgressEvent("snapshot", spec.files_summary(), "info"))
    for finding in spec.warnings:
        reporter(ProgressEvent("snapshot", f"{finding.code}: {finding.message}", "warning"))
    if cancel is not None:
        cancel.raise_if_cancelled()
    nb_path = Path(path)
    target = Path(rerun_path) if rerun_path is not None else nb_path
    if engine == "venv":
        venv_run, _ = _rerun(spec, target, engine, build, run, reporter, cancel, files_from=nb_path)
        return Containerised(spec, None, venv_run)
    if client is None:
        from .image.engine import connect

        client = connect()
    built = build_image(spec, nb_path, build, reporter, cancel, client)
    result = None
    if rerun:
        result = run_notebook(built.image, target, run or RunOptions(), reporter, cancel, client)
        mark_origin(result, spec)
    return Containerised(spec, built, result)


_rerun = rerun  # containerise's own ``rerun`` flag shadows the function inside it
