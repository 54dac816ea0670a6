"""The operation model: states, the row/wire form, events, ids, and text helpers."""

from __future__ import annotations

import enum
import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from ..errors import EnvpackError


class State(str, enum.Enum):
    """The one state vocabulary of operations and cluster jobs; the last four are final.

    ``PENDING`` is another name of ``QUEUED``: a cluster job the backend accepted but has not
    started. (The job index of earlier versions wrote ``submitting`` and ``pending``; opening
    it rewrites both as ``queued``.)
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"
    PENDING = "queued"

    @property
    def terminal(self) -> bool:
        """Whether nothing can change the state any more."""
        return self not in (State.QUEUED, State.RUNNING)


STATES = tuple(state.value for state in State)
TERMINAL = frozenset(state.value for state in State if state.terminal)
#: Allowed state changes; everything else is refused (409 through the API).
TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "cancelled", "failed", "lost"}),
    "running": frozenset({"succeeded", "failed", "cancelled", "lost"}),
    **{state: frozenset() for state in TERMINAL},
}
#: Label the server puts on every Docker object an operation creates (written before launch).
OPERATION_LABEL = "org.jupyter.envpack.operation"
MAX_LINE = 64 * 1024
OP_ID = re.compile(r"[0-9a-f]{32}")


class StoreUnavailableError(EnvpackError):
    """The operations database cannot be read or written (locked, corrupt, disk full)."""

    status = 503
    reason = "store-unavailable"


class LostError(EnvpackError):
    """The backend object of an operation is gone; nobody can tell how it ended."""

    status = 410
    reason = "lost"


@dataclass
class Operation:
    """One build, run or job, as stored and as sent over the wire (:meth:`to_json`)."""

    id: str
    kind: str
    path: str
    options: dict[str, Any] = field(default_factory=dict)
    state: str = "queued"
    progress: float | None = None
    stage: str | None = None
    message: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    dedupe_key: str | None = None
    handle: dict[str, Any] = field(default_factory=dict)
    cancel_requested: bool = False
    attempt: int = 0
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    owner: str | None = None  # "host:pid" of the server following it (not on the wire)

    @property
    def finished(self) -> bool:
        """Whether the operation reached a terminal state."""
        return self.state in TERMINAL

    def to_json(self) -> dict[str, Any]:
        """Return the REST form (see docs/api.md)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "path": self.path,
            "options": self.options,
            "progress": self.progress,
            "stage": self.stage,
            "message": self.message,
            "result": self.result,
            "error": self.error,
            "handle": self.handle,
            "cancel_requested": self.cancel_requested,
            "attempt": self.attempt,
            "created": self.created,
            "updated": self.updated,
        }


@dataclass(frozen=True)
class Event:
    """One entry of an operation's event log; ``seq`` grows across all operations."""

    seq: int
    op_id: str
    time: float
    type: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """Return the wire form: ``{"seq", "time", "type", ...data}``."""
        return {**self.data, "seq": self.seq, "time": self.time, "type": self.type}


def new_operation_id() -> str:
    """Return a fresh operation id (32 hex digits)."""
    return uuid.uuid4().hex


def dedupe_key(kind: str, path: str, options: dict[str, Any]) -> str:
    """Return the key under which identical requests share one operation."""
    canonical = json.dumps([kind, path, options], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def scrub_path(text: str, root: str) -> str:
    """Remove the absolute ``root`` prefix from ``text`` (``/srv/root/a/b.ipynb`` → ``a/b.ipynb``)."""
    root = root.rstrip("/")
    return text.replace(root + "/", "").replace(root, ".") if root else text


def truncate(text: str, limit: int = MAX_LINE) -> str:
    """Cut ``text`` to ``limit`` characters, saying so."""
    return text if len(text) <= limit else text[:limit] + " …[truncated]"


def error_json(exc: EnvpackError) -> dict[str, Any]:
    """Return ``exc.to_json()`` plus the build step and log tail when the error has them."""
    out: dict[str, Any] = dict(exc.to_json())
    for extra in ("step", "log_tail"):
        value = getattr(exc, extra, None)
        if value:
            out[extra] = [truncate(str(v), 4096) for v in value] if extra == "log_tail" else value
    return out
