"""Progress events: the one way long work (snapshot, build, run, push, jobs) reports to its caller.

The core calls a :data:`Reporter` with :class:`ProgressEvent` objects; each surface renders them its
own way (rich progress on the CLI, ipywidgets in magics, an SSE stream in the server).
"""

from __future__ import annotations

import threading
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
