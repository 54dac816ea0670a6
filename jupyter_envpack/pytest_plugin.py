"""``pytest --envpack notebooks/``: rerun each notebook in its pinned image, one test per code cell.

Off unless ``--envpack`` is given (the ``pytest11`` entry point only adds options). Each collected
``*.ipynb`` goes through the one pipeline (:func:`jupyter_envpack.pipeline.containerise`: snapshot
or lock file → build or reuse the image → rerun in a container) once per session, the first time
one of its cells is tested; every code cell is then one item that reads the report. nbval's cell
markers, ``--envpack-lax`` and ``--envpack-sanitize-with`` work as with nbval
(:mod:`jupyter_envpack.cellcheck`). See ``docs/ci.md``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from .cellcheck import (
    CellOptions,
    blank_skipped_cells,
    cell_options,
    compare_sanitized,
    read_sanitize_file,
    stored_error,
    verdict,
)
from .errors import EnvpackError, InputError

OUTPUT_SUFFIX = ".envpack.ipynb"
_ITEM_PREFIX = "cell-"


def pytest_addoption(parser: pytest.Parser) -> None:
    """The ``--envpack*`` options (they mirror ``jupyter envpack run``'s)."""
    group = parser.getgroup("envpack", "rerun notebooks in their pinned image (jupyter-envpack)")
    group.addoption("--envpack", action="store_true", help="collect *.ipynb and rerun them")
    group.addoption("--envpack-python", metavar="PATH", help="the kernel's interpreter to snapshot")
    group.addoption("--envpack-kernel", metavar="NAME", help="a kernelspec to snapshot")
    group.addoption(
        "--envpack-base-image",
        metavar="REF",
        help="base image (default: c.EnvPack.base_image, $ENVPACK_BASE_IMAGE, the lock file's, "
        "else python:X.Y-slim)",
    )
    group.addoption(
        "--envpack-engine",
        choices=("docker", "venv"),
        default=None,
        help="where notebooks rerun: their image on the container engine (default), or a fresh "
        "virtualenv of their lock when CI has no engine",
    )
    group.addoption(
        "--envpack-lax", action="store_true", help="only compare cells marked NBVAL_CHECK_OUTPUT"
    )
    group.addoption(
        "--envpack-check-images",
        action="store_true",
        help="also fail when image outputs differ (nbval ignores them)",
    )
    group.addoption(
        "--envpack-sanitize-with", metavar="FILE", help="nbval sanitizer file (regex:/replace:)"
    )
    group.addoption(
        "--envpack-tolerance",
        type=float,
        default=None,
        metavar="REL",
        help="relative tolerance when comparing numbers (default 0: exact)",
    )
    group.addoption(
        "--envpack-no-lock", action="store_true", help="ignore NB.envpack.lock beside a notebook"
    )
    group.addoption(
        "--envpack-output-dir",
        metavar="DIR",
        help="where executed notebooks are written (default: a new temporary folder)",
    )
    group.addoption(
        "--envpack-label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra label on the images' runs (repeatable)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Start the session's notebook runner when ``--envpack`` is given."""
    if config.getoption("envpack"):
        config.stash[_SESSION] = EnvpackSession.from_config(config)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """A notebook collector for ``*.ipynb`` (not our own outputs nor Jupyter's checkpoints)."""
    if _SESSION not in parent.config.stash or file_path.suffix != ".ipynb":
        return None
    if file_path.name.endswith(OUTPUT_SUFFIX) or ".ipynb_checkpoints" in file_path.parts:
        return None
    collector: pytest.Collector = EnvpackNotebook.from_parent(parent, path=file_path)
    return collector


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """Snapshot and lock warnings, and where the executed notebooks are."""
    session = config.stash.get(_SESSION, None)
    if session is None or not session.outcomes:
        return
    terminalreporter.section("envpack")
    for path, outcome in session.outcomes.items():
        for warning in outcome.warnings:
            terminalreporter.write_line(f"{path.name}: warning: {warning}")
        if outcome.image:
            terminalreporter.write_line(f"{path.name}: image {outcome.image}")
    terminalreporter.write_line(f"executed notebooks: {session.output_dir}")


@dataclass
class Outcome:
    """What one notebook's run produced (or the error that stopped it)."""

    cells: dict[int, Any] = field(default_factory=dict)
    error: EnvpackError | None = None
    image: str | None = None
    executed: Path | None = None
    warnings: list[str] = field(default_factory=list)
    reported_by: str | None = None  # the item that showed ``error`` in full


@dataclass
class EnvpackSession:
    """Options of the session and the cache: each notebook runs once."""

    python: str | None
    kernel: str | None
    lax: bool
    check_images: bool
    sanitize: list[Any]
    lock: bool
    output_dir: Path
    build_overrides: dict[str, Any]
    run_overrides: dict[str, Any]
    config_obj: Any
    engine: str = "docker"
    outcomes: dict[Path, Outcome] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: pytest.Config) -> EnvpackSession:
        """Options from the command line over ``c.EnvPack`` (as every envpack surface)."""
        from .config import load_envpack_config

        opt = config.getoption
        if opt("envpack_python") and opt("envpack_kernel"):
            raise pytest.UsageError("give either --envpack-python or --envpack-kernel, not both")
        cfg = load_envpack_config()
        sanitize_file = opt("envpack_sanitize_with")
        try:
            sanitize = read_sanitize_file(sanitize_file) if sanitize_file else []
            labels = dict(_label(text) for text in opt("envpack_label"))
        except InputError as exc:
            raise pytest.UsageError(str(exc)) from None
        out = opt("envpack_output_dir")
        output_dir = Path(out) if out else Path(tempfile.mkdtemp(prefix="envpack-pytest-"))
        base = opt("envpack_base_image") or os.environ.get("ENVPACK_BASE_IMAGE") or None
        return cls(
            python=opt("envpack_python"),
            kernel=opt("envpack_kernel") or cfg.kernel,
            lax=bool(opt("envpack_lax")),
            check_images=bool(opt("envpack_check_images")),
            sanitize=sanitize,
            lock=not opt("envpack_no_lock"),
            output_dir=output_dir,
            build_overrides={"base_image": base, "labels": labels},
            run_overrides={"tolerance": opt("envpack_tolerance"), "labels": labels},
            config_obj=cfg,
            engine=opt("envpack_engine") or "docker",
        )

    def outcome(self, path: Path, nb: Any) -> Outcome:
        """The run of the notebook at ``path`` (parsed as ``nb``), done on first use."""
        if path not in self.outcomes:
            self.outcomes[path] = self._run(path, nb)
        return self.outcomes[path]

    def _run(self, path: Path, nb: Any) -> Outcome:
        from .events import ProgressEvent
        from .pipeline import containerise
        from .snapshot.notebook import dumps_notebook, parse_notebook, read_notebook_bytes

        outcome = Outcome()

        def reporter(event: ProgressEvent) -> None:
            if event.kind == "warning":
                outcome.warnings.append(event.message)

        self.output_dir.mkdir(parents=True, exist_ok=True)
        # a new folder per notebook and session: nothing planted in it can be written through
        folder = Path(tempfile.mkdtemp(prefix=f"{path.stem[:60]}-", dir=self.output_dir))
        prepared = folder / path.name  # same name: the image's copy is replaced by it
        prepared.write_text(dumps_notebook(blank_skipped_cells(nb, self.lax)), encoding="utf-8")
        executed = folder / (path.stem + OUTPUT_SUFFIX)
        try:
            build = self.config_obj.build_options(**self.build_overrides)
            build.validate()
            run = self.config_obj.run_options(
                output=str(executed), allow_errors=True, **self.run_overrides
            )
            done = containerise(
                path,
                python=self.python,
                kernel=None if self.python else self.kernel,
                build=build,
                run=run,
                reporter=reporter,
                rerun_path=prepared,
                use_lock=self.lock,
                engine=self.engine,
            )
        except EnvpackError as exc:
            outcome.error = exc
            return outcome
        outcome.image = done.build.image if done.build else None
        outcome.executed = executed
        executed_nb = parse_notebook(read_notebook_bytes(executed), name=executed.name)
        report = compare_sanitized(nb, executed_nb, self.sanitize, run.tolerance)
        outcome.cells = {cell.index: cell for cell in report.cells}
        if done.run is not None and done.run.report.run_status not in {"completed"}:
            outcome.warnings.append(f"run ended: {done.run.report.run_status}")
        return outcome


_SESSION = pytest.StashKey[EnvpackSession]()


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"invalid label {text!r}", hint="write --envpack-label KEY=VALUE")
    return key.strip(), value


class CellFailure(Exception):
    """A code cell that did not reproduce (message, source, diff)."""

    def __init__(self, reason: str, source: str = "", diff: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.source, self.diff = reason, source, diff


class EnvpackNotebook(pytest.File):
    """One notebook: an item per code cell."""

    def collect(self) -> Iterator[pytest.Item]:
        """Yield ``cell-<index>`` for every code cell (index among all cells, as in reports)."""
        from .snapshot.notebook import parse_notebook, read_notebook_bytes

        session = self.config.stash[_SESSION]
        try:
            self.nb = parse_notebook(read_notebook_bytes(self.path), name=self.path.name)
        except EnvpackError as exc:
            raise self.CollectError(str(exc)) from None
        for index, cell in enumerate(self.nb.get("cells", [])):
            if cell.get("cell_type") == "code":
                options = cell_options(cell, session.lax)
                yield EnvpackCell.from_parent(
                    self, name=f"{_ITEM_PREFIX}{index}", index=index, cell=cell, options=options
                )


class EnvpackCell(pytest.Item):
    """One code cell: passes when its rerun in the image reproduced it."""

    def __init__(self, *, index: int, cell: Any, options: CellOptions, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index, self.cell, self.options = index, cell, options
        if options.skip:
            self.add_marker(pytest.mark.skip(reason="NBVAL_SKIP: not executed"))

    def runtest(self) -> None:
        """Run the notebook (once per session) and judge this cell."""
        notebook: EnvpackNotebook = self.parent  # type: ignore[assignment]
        outcome = self.config.stash[_SESSION].outcome(self.path, notebook.nb)
        source = self.cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        if outcome.error is not None:
            if outcome.reported_by:
                raise CellFailure(f"the notebook did not run (see {outcome.reported_by})")
            outcome.reported_by = self.name
            tail = list(getattr(outcome.error, "log_tail", None) or [])[-15:]
            raise CellFailure(
                f"{type(outcome.error).__name__}: {outcome.error}",
                diff="last log lines:\n" + "\n".join(tail) if tail else None,
            )
        result = outcome.cells.get(self.index)
        if result is None:
            raise CellFailure("the cell is missing from the report", source)
        session = self.config.stash[_SESSION]
        reason = verdict(result, self.options, session.check_images, stored_error(self.cell))
        if reason is not None:
            raise CellFailure(reason, source, result.diff)

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        """The notebook, the cell, its source and the diff."""
        exc = excinfo.value
        if not isinstance(exc, CellFailure):
            return str(super().repr_failure(excinfo))
        parts = [f"{self.path.name}, cell {self.index}: {exc.reason}"]
        if exc.source:
            parts += ["--- cell source ---", exc.source[:2000]]
        if exc.diff:
            parts += ["--- diff (original → rerun) ---", exc.diff]
        return "\n".join(parts)

    def reportinfo(self) -> tuple[Path, int, str]:
        """Where the cell is, for pytest's headers."""
        return self.path, 0, self.name
