"""Progress events: the one way long work (snapshot, build, run, push, jobs) reports to its caller.

The core calls a :data:`Reporter` with :class:`ProgressEvent` objects; each surface renders them its
own way (rich progress on the CLI, ipywidgets in magics, an SSE stream in the server).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from .errors import CancelledError

EventKind = Literal["step", "log", "progress", "info", "warning"]


@dataclass(frozen=True)
class ProgressEvent:
    """One thing that happened during long work.

    Parameters
    ----------
    stage
        The pipeline stage: ``snapshot``, ``wheels``, ``build``, ``run``, ``push`` or ``job``.
    message
        One line of text (already decoded, never containing secrets).
    kind
        ``step`` starts a new step, ``log`` is a log line, ``progress`` updates ``progress``.
    progress
        Fraction done in ``[0, 1]`` when known.
    """

    stage: str
    message: str
    kind: EventKind = "log"
    progress: float | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the event as a JSON-ready dict."""
        return asdict(self)


Reporter = Callable[[ProgressEvent], None]


def null_reporter(event: ProgressEvent) -> None:
    """Discard an event (the default reporter)."""


class StageClock:
    """A reporter in front of another that times each stage and keeps what to replay.

    A stage runs from its first event until the next stage's first event; :meth:`summary` is the
    per-stage timing line that ends a build (``snapshot 0.08 s · wheels 2.10 s · build …``).
    ``kept`` holds the ``info`` and ``warning`` events, which a remembered no-op build replays.
    """

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.started = time.monotonic()
        self.stages: dict[str, float] = {}
        self.kept: list[tuple[str, str, str]] = []
        self._stage: str | None = None
        self._since = self.started

    def __call__(self, event: ProgressEvent) -> None:
        """Time ``event``'s stage, then pass the event on."""
        if event.stage != self._stage:
            self._close()
            self._stage = event.stage
        if event.kind in ("info", "warning"):
            self.kept.append((event.stage, event.message, event.kind))
        self.reporter(event)

    def _close(self) -> None:
        now = time.monotonic()
        if self._stage is not None:
            self.stages[self._stage] = self.stages.get(self._stage, 0.0) + now - self._since
        self._since = now

    def summary(self) -> str:
        """``time: <stage> <s> · … (total <s>)`` for the stages seen so far."""
        self._close()
        self._stage = None
        parts = [f"{name} {secs:.2f} s" for name, secs in self.stages.items()]
        total = time.monotonic() - self.started
        return f"time: {' · '.join(parts) or 'nothing'} (total {total:.2f} s)"

    def finish(self, stage: str = "build") -> None:
        """Report :meth:`summary` as an ``info`` event of ``stage``."""
        line = self.summary()
        self.reporter(ProgressEvent(stage, line, "info"))


class CancelToken:
    """A flag a caller sets to ask long work to stop; the work checks it between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the work to stop."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; return True early if cancelled."""
        return self._event.wait(seconds)

    def raise_if_cancelled(self, what: str = "operation") -> None:
        """Raise :class:`CancelledError` when cancelled."""
        if self.cancelled:
            raise CancelledError(f"{what} cancelled")
