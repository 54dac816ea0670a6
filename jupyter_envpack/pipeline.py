"""The main job in one call: snapshot → build → rerun → report."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .events import CancelToken, ProgressEvent, Reporter, null_reporter
from .execute import RunOptions, RunResult, run_notebook
from .image import BuildOptions, BuildResult, build_image
from .snapshot import EnvSpec, IndexOptions, SnapshotOptions, take_snapshot


@dataclass
class Containerised:
    """Everything the main job produced."""

    spec: EnvSpec
    build: BuildResult
    run: RunResult | None

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "snapshot": self.spec.to_json(),
            "build": self.build.to_json(),
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
) -> Containerised:
    """Snapshot ``path`` in its kernel's environment, build its image and (by default) rerun it.

    ``snapshot`` defaults to the build's package index settings and the default data-file rules.
    """
    build = build or BuildOptions()
    if snapshot is None:
        index = IndexOptions(build.index_url, build.extra_index_urls, build.ca_bundle)
        snapshot = SnapshotOptions(index=index)
    reporter(ProgressEvent("snapshot", f"reading {os.fspath(path)} and probing the kernel", "step"))
    spec = take_snapshot(path, python=python, kernel=kernel, options=snapshot)
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
    if client is None:
        from .image.engine import connect

        client = connect()
    nb_path = Path(path)
    built = build_image(spec, nb_path, build, reporter, cancel, client)
    result = None
    if rerun:
        result = run_notebook(built.image, nb_path, run or RunOptions(), reporter, cancel, client)
    return Containerised(spec, built, result)
