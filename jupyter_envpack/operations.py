"""Operations: every long piece of work (build, run, cluster job) as one persistent model.

::

    Operation        id, kind, state, progress, path, options, result, error, handle
    OperationStore   SQLite (WAL, busy_timeout): rows + an append-only, numbered event log
    OperationManager runs kinds in a bounded pool of worker threads, dedupes, cancels, reconciles

States move only along :data:`TRANSITIONS`, with compare-and-set updates, so two writers (two
threads, or two processes sharing the file) can never both finish one operation. A *kind* is a
:class:`Kind`: a ``run(op, reporter, cancel) -> dict`` callable plus an optional ``resume`` used
after a server restart for rows that were running. Nothing here imports tornado or jupyter_server.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import re
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .errors import CancelledError, ConflictError, EnvpackError, InputError, NotFoundError
from .events import CancelToken, ProgressEvent

if TYPE_CHECKING:
    from .config import EnvPack

log = logging.getLogger(__name__)

STATES = ("queued", "running", "succeeded", "failed", "cancelled", "lost")
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "lost"})
#: Allowed state changes; everything else is refused (409 through the API).
TRANSITIONS: dict[str, frozenset[str]] = {
    "queued": frozenset({"running", "cancelled", "failed", "lost"}),
    "running": frozenset({"succeeded", "failed", "cancelled", "lost"}),
    **{state: frozenset() for state in TERMINAL},
}
#: Label the server puts on every Docker object an operation creates (written before launch).
OPERATION_LABEL = "org.jupyter.envpack.operation"
MAX_LINE = 64 * 1024
_OP_ID = re.compile(r"[0-9a-f]{32}")

_COLUMNS = ("id", "kind", "state", "path", "options", "progress", "stage", "message", "result",
            "error", "dedupe_key", "handle", "cancel_requested", "attempt", "created", "updated",
            "owner")
SCHEMA_VERSION = 2
#: Columns added after version 1, with their SQL type: added in place by ``_migrate``.
_ADDED_COLUMNS = {"owner": "TEXT"}
_JSON_COLUMNS = frozenset({"options", "result", "error", "handle"})
_SCHEMA = """
CREATE TABLE IF NOT EXISTS operations (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, path TEXT NOT NULL,
    options TEXT NOT NULL, progress REAL, stage TEXT, message TEXT, result TEXT, error TEXT,
    dedupe_key TEXT, handle TEXT NOT NULL, cancel_requested INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, updated REAL NOT NULL);
CREATE INDEX IF NOT EXISTS operations_state ON operations(state);
CREATE INDEX IF NOT EXISTS operations_dedupe ON operations(dedupe_key, state);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, op_id TEXT NOT NULL, time REAL NOT NULL,
    type TEXT NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_op ON events(op_id, seq);
"""


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
        return {"id": self.id, "kind": self.kind, "state": self.state, "path": self.path,
                "options": self.options, "progress": self.progress, "stage": self.stage,
                "message": self.message, "result": self.result, "error": self.error,
                "handle": self.handle, "cancel_requested": self.cancel_requested,
                "attempt": self.attempt, "created": self.created, "updated": self.updated}


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


class OperationStore:
    """SQLite persistence of operations and their event logs (thread-safe, one connection).

    Parameters
    ----------
    path
        The database file (its folder is created), or ``":memory:"``.
    busy_timeout
        Seconds to wait for a lock held by another process before failing with 503.
    """

    def __init__(self, path: str | Path, busy_timeout: float = 5.0) -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self._busy_ms = int(busy_timeout * 1000)
        self._db: sqlite3.Connection | None = None
        try:
            self._db = self._open()
        except sqlite3.OperationalError as exc:  # cannot open, locked, read-only: not corrupt
            raise StoreUnavailableError(f"operations database unusable: {exc}") from None
        except sqlite3.DatabaseError as exc:  # not a database / malformed: keep it for forensics
            self._move_aside(exc)
            try:
                self._db = self._open()
            except sqlite3.Error as again:
                raise StoreUnavailableError(f"operations database unusable: {again}") from None

    def _open(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None,
                             timeout=self._busy_ms / 1000)
        try:
            db.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            # WAL needs shared memory that network filesystems do not give: a rollback journal there
            mode = "DELETE" if on_network_fs(self.path) else "WAL"
            db.execute(f"PRAGMA journal_mode = {mode}")
            db.execute("PRAGMA synchronous = NORMAL")
            if db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
                raise sqlite3.DatabaseError("quick_check failed")
            db.executescript(_SCHEMA)
            self._migrate(db)
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        """Bring an older database up to :data:`SCHEMA_VERSION` (idempotent)."""
        have = {row[1] for row in db.execute("PRAGMA table_info(operations)")}
        for name, sql_type in _ADDED_COLUMNS.items():
            if name not in have:
                db.execute(f"ALTER TABLE operations ADD COLUMN {name} {sql_type}")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _move_aside(self, exc: Exception) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            src = Path(self.path + suffix)
            if src.exists():
                src.replace(f"{self.path}.corrupt-{stamp}{suffix}")
        log.error("envpack: the operations database %s was unreadable (%s); moved it aside to "
                  "%s.corrupt-%s and started a new one", self.path, exc, self.path, stamp)

    @contextlib.contextmanager
    def _cursor(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._db is None:
                raise StoreUnavailableError("operations database is closed")
            try:
                if write:
                    self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                if write:
                    self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                if write and self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise StoreUnavailableError(f"operations database error: {exc}",
                                            hint="try again in a moment") from None
            except BaseException:
                if write and self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    @staticmethod
    def _row(row: tuple[Any, ...]) -> Operation:
        values = dict(zip(_COLUMNS, row, strict=True))
        for name in _JSON_COLUMNS:
            values[name] = json.loads(values[name]) if values[name] is not None else None
        values["handle"] = values["handle"] or {}
        values["cancel_requested"] = bool(values["cancel_requested"])
        return Operation(**values)

    @staticmethod
    def _encode(name: str, value: Any) -> Any:
        if name in _JSON_COLUMNS:
            return None if value is None else json.dumps(value)
        return int(value) if isinstance(value, bool) else value

    def create(self, op: Operation) -> Operation:
        """Insert a new operation row."""
        values = [self._encode(c, getattr(op, c)) for c in _COLUMNS]
        with self._cursor(write=True) as db:
            db.execute(f"INSERT INTO operations ({','.join(_COLUMNS)}) "  # noqa: S608 - fixed names
                       f"VALUES ({','.join('?' * len(_COLUMNS))})", values)
            self._insert_event(db, op.id, "state", {"state": op.state})
        return op

    def get(self, op_id: str) -> Operation | None:
        """Return the operation ``op_id``, or None."""
        with self._cursor() as db:
            row = db.execute(f"SELECT {','.join(_COLUMNS)} FROM operations "  # noqa: S608
                             "WHERE id = ?", (op_id,)).fetchone()
        return self._row(row) if row else None

    def find(self, *, kind: str | None = None, state: str | None = None,
             limit: int = 100) -> list[Operation]:
        """Return operations, newest first, optionally filtered."""
        where, args = [], []
        for name, value in (("kind", kind), ("state", state)):
            if value is not None:
                where.append(f"{name} = ?")
                args.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._cursor() as db:
            rows = db.execute(f"SELECT {','.join(_COLUMNS)} FROM operations {clause} "  # noqa: S608
                              "ORDER BY created DESC, rowid DESC LIMIT ?", (*args, limit))
            return [self._row(r) for r in rows.fetchall()]

    def non_terminal(self) -> list[Operation]:
        """Return queued and running operations, oldest first (what a restart must reconcile)."""
        with self._cursor() as db:
            rows = db.execute(f"SELECT {','.join(_COLUMNS)} FROM operations "  # noqa: S608
                              "WHERE state IN ('queued', 'running') ORDER BY created, rowid")
            return [self._row(r) for r in rows.fetchall()]

    def claim(self, op_id: str, previous: str | None, owner: str) -> bool:
        """Compare-and-set the owner of a running row (two starting servers: one wins)."""
        with self._cursor(write=True) as db:
            return db.execute("UPDATE operations SET owner = ? WHERE id = ? AND state = 'running' "
                              "AND owner IS ?", (owner, op_id, previous)).rowcount == 1

    def cancel_requested(self, op_ids: list[str]) -> list[str]:
        """Return those of ``op_ids`` whose cancel was requested (by any process)."""
        if not op_ids:
            return []
        with self._cursor() as db:
            marks = ",".join("?" * len(op_ids))
            sql = f"SELECT id FROM operations WHERE cancel_requested = 1 AND id IN ({marks})"  # noqa: S608
            rows = db.execute(sql, op_ids)
            return [r[0] for r in rows.fetchall()]

    def find_active(self, key: str) -> Operation | None:
        """Return the queued or running operation with dedupe key ``key``, if any."""
        with self._cursor() as db:
            row = db.execute(f"SELECT {','.join(_COLUMNS)} FROM operations "  # noqa: S608
                             "WHERE dedupe_key = ? AND state IN ('queued', 'running') "
                             "ORDER BY created LIMIT 1", (key,)).fetchone()
        return self._row(row) if row else None

    def update(self, op_id: str, **fields: Any) -> None:
        """Set non-state fields (progress, stage, message, handle, cancel_requested...)."""
        if "state" in fields or not fields:
            raise ValueError("state changes go through transition()")
        self._set(op_id, fields, None)

    def transition(self, op_id: str, to: str, *, from_states: tuple[str, ...] | None = None,
                   **fields: Any) -> Operation | None:
        """Compare-and-set the state; return the new row, or None when the row was not in a
        state that may move to ``to`` (someone else changed it first)."""
        allowed = tuple(s for s, nexts in TRANSITIONS.items() if to in nexts)
        if from_states is not None:
            allowed = tuple(s for s in allowed if s in from_states)
        if not allowed:
            return None
        event = {"state": to, **({"error": fields["error"]} if fields.get("error") else {})}
        if not self._set(op_id, {**fields, "state": to}, allowed, event):
            return None
        return self.get(op_id)

    def _set(self, op_id: str, fields: dict[str, Any], states: tuple[str, ...] | None,
             event: dict[str, Any] | None = None) -> bool:
        fields = {"updated": time.time(), **fields}
        unknown = set(fields) - set(_COLUMNS)
        if unknown:
            raise ValueError(f"unknown columns {sorted(unknown)}")
        assignments = ", ".join(f"{name} = ?" for name in fields)
        args = [self._encode(n, v) for n, v in fields.items()]
        sql = f"UPDATE operations SET {assignments} WHERE id = ?"  # noqa: S608 - checked names
        args.append(op_id)
        if states is not None:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args.extend(states)
        with self._cursor(write=True) as db:
            changed = db.execute(sql, args).rowcount == 1
            if changed and event is not None:  # same transaction: a state and its event agree
                self._insert_event(db, op_id, "state", event)
            return changed

    @staticmethod
    def _insert_event(db: sqlite3.Connection, op_id: str, type_: str,
                      data: dict[str, Any]) -> Event:
        now = time.time()
        cur = db.execute("INSERT INTO events (op_id, time, type, data) VALUES (?, ?, ?, ?)",
                         (op_id, now, type_, json.dumps(data)))
        return Event(int(cur.lastrowid or 0), op_id, now, type_, data)

    def add_event(self, op_id: str, type_: str, data: dict[str, Any]) -> Event:
        """Append an event to ``op_id``'s log and return it with its sequence number."""
        with self._cursor(write=True) as db:
            return self._insert_event(db, op_id, type_, data)

    def events(self, op_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        """Return ``op_id``'s events with ``seq > after``, oldest first."""
        with self._cursor() as db:
            rows = db.execute("SELECT seq, op_id, time, type, data FROM events WHERE op_id = ? "
                              "AND seq > ? ORDER BY seq LIMIT ?", (op_id, after, limit))
            return [Event(s, o, t, ty, json.loads(d)) for s, o, t, ty, d in rows.fetchall()]

    def prune(self, older_than: float) -> int:
        """Delete finished operations (and their events) last updated before ``older_than``."""
        terminal = tuple(sorted(TERMINAL))
        marks = ",".join("?" * len(terminal))
        with self._cursor(write=True) as db:
            old = f"SELECT id FROM operations WHERE state IN ({marks}) AND updated < ?"  # noqa: S608
            db.execute(f"DELETE FROM events WHERE op_id IN ({old})",  # noqa: S608 - fixed
                       (*terminal, older_than))
            return int(db.execute(f"DELETE FROM operations WHERE id IN ({old})",  # noqa: S608
                                  (*terminal, older_than)).rowcount)

    def close(self) -> None:
        """Close the connection (later calls raise :class:`StoreUnavailableError`)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class Paths(Protocol):
    """How the manager maps API paths (relative to the contents root) to files and back."""

    def notebook(self, api_path: str) -> Path:
        """Return the notebook's absolute path (raise ``NotFoundError``/``InputError``)."""

    def output(self, api_path: str) -> Path:
        """Return where an output notebook may be written."""

    def relative(self, path: Path) -> str:
        """Return the API path of ``path``."""


class OperationContext:
    """What a kind's ``run``/``resume`` callable receives as ``op``.

    Attributes: ``id``, ``kind``, ``path`` (API path), ``options`` (validated), ``notebook``
    (absolute path, re-resolved inside the contents root), ``config`` (:class:`EnvPack`),
    ``labels`` (put them on every Docker object), ``handle`` and ``resumed``.
    """

    def __init__(self, manager: OperationManager, op: Operation, resumed: bool) -> None:
        self._manager = manager
        self.id, self.kind, self.path = op.id, op.kind, op.path
        self.options = dict(op.options)
        self.handle = dict(op.handle)
        self.resumed = resumed
        self.config = manager.config
        self.labels = {OPERATION_LABEL: op.id}

    @property
    def notebook(self) -> Path:
        """The notebook's absolute path (resolved again now, so a restart re-checks it)."""
        return self._manager.paths.notebook(self.path)

    def resolve_output(self, api_path: str) -> Path:
        """Return the absolute path of an output notebook ``api_path`` inside the root."""
        return self._manager.paths.output(api_path)

    def set_handle(self, **values: Any) -> None:
        """Persist backend handles (container id, service name...) *before* launching them."""
        self.handle.update(values)
        self._manager.store.update(self.id, handle=self.handle)

    def relative(self, path: str | Path) -> str:
        """Return ``path`` relative to the contents root (never leak server paths)."""
        return self._manager.paths.relative(Path(path))


Runner = Callable[[OperationContext, Callable[[ProgressEvent], None], CancelToken], dict[str, Any]]


@dataclass(frozen=True)
class Kind:
    """A kind of operation the manager can run.

    Parameters
    ----------
    name
        ``build``, ``run``, ``job``...
    run
        ``run(op, reporter, cancel) -> result`` (JSON-ready dict); raises ``EnvpackError`` to fail,
        ``CancelledError`` when it stopped because ``cancel`` was set. Runs in a worker thread.
    resume
        Same signature; called after a restart for rows left ``running``: follow the backend
        object again (found by ``op.labels``/``op.handle``), return its result, or raise
        :class:`LostError`. None: such rows become ``lost``.
    validate
        ``validate(options) -> options``: check the request's options (raise ``InputError``).
    dedupe
        Attach identical requests (same kind, path and options) to the active operation.
    """

    name: str
    run: Runner
    resume: Runner | None = None
    validate: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    dedupe: bool = False


class OperationManager:
    """Runs operations in ``config.concurrency_limit`` worker threads; the rest wait queued.

    Parameters
    ----------
    store
        Where operations live.
    config
        The ``EnvPack`` configuration (limits; passed to kinds as ``op.config``).
    paths
        API paths ↔ files inside the contents root (:class:`Paths`).
    """

    def __init__(self, store: OperationStore, config: EnvPack, paths: Paths) -> None:
        self.store, self.config, self.paths = store, config, paths
        self._kinds: dict[str, Kind] = {}
        self._queue: queue.Queue[tuple[str, bool] | None] = queue.Queue()
        self._tokens: dict[str, CancelToken] = {}
        self._listeners: dict[str, set[Callable[[], None]]] = {}
        self._log_counts: dict[str, int] = {}
        self._lock = threading.RLock()
        self._threads: list[threading.Thread] = []
        self._stopping = False
        #: Who follows the operations this manager runs; other live owners are left alone.
        self.owner = f"{socket.gethostname()}:{os.getpid()}"

    # ----- kinds ---------------------------------------------------------------------------
    def register_kind(self, kind: Kind) -> None:
        """Make ``kind.name`` available to :meth:`submit` (replaces an earlier registration)."""
        self._kinds[kind.name] = kind

    @property
    def kinds(self) -> list[str]:
        """Names of the registered kinds."""
        return sorted(self._kinds)

    # ----- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker threads, forget old finished operations, reconcile the rest."""
        if self.config.retention_days > 0:
            pruned = self.store.prune(time.time() - self.config.retention_days * 86400)
            if pruned:
                log.info("envpack: forgot %d operations older than %g days", pruned,
                         self.config.retention_days)
        for i in range(self.config.concurrency_limit):
            # daemon threads: a stopping server detaches from running work instead of waiting
            t = threading.Thread(target=self._worker, name=f"envpack-op-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        threading.Thread(target=self._watch_cancels, name="envpack-cancels", daemon=True).start()
        self.reconcile()

    def shutdown(self) -> None:
        """Stop taking work. Running operations are *detached*, not cancelled: their rows stay
        ``running`` and the next server start follows them again (or marks them lost)."""
        self._stopping = True
        for _ in self._threads:
            self._queue.put(None)

    def reconcile(self) -> None:
        """Requeue queued rows; follow running rows again through their kind's ``resume``.

        Rows followed by another live server (same database, other process) are left alone.
        """
        for op in self.store.non_terminal():
            kind = self._kinds.get(op.kind)
            if op.owner not in (None, self.owner) and owner_alive(op.owner):
                log.info("envpack: operation %s is followed by %s; leaving it", op.id, op.owner)
                continue
            if op.state == "queued" and kind is not None:
                self._queue.put((op.id, False))  # the queued→running CAS keeps it to one run
                continue
            if op.state == "running" and not self.store.claim(op.id, op.owner, self.owner):
                continue  # another starting server claimed it first
            if op.state == "running" and kind is not None and kind.resume is not None:
                self._emit(op.id, "progress", ProgressEvent(
                    op.kind, "server restarted; following the operation again", "info").to_json())
                self._queue.put((op.id, True))
            else:
                why = f"unknown kind {op.kind!r}" if kind is None else "the server stopped"
                self._finish(op.id, "lost", error=LostError(
                    f"{why} while this operation was {op.state}",
                    hint="start it again").to_json())

    # ----- requests ------------------------------------------------------------------------
    def submit(self, kind: str, path: str, options: dict[str, Any] | None = None,
               ) -> tuple[Operation, bool]:
        """Queue an operation; return it and whether it is new (False: attached to a twin)."""
        spec = self._kinds.get(kind)
        if spec is None:
            raise InputError(f"unknown operation kind {kind!r}",
                             hint=f"one of: {', '.join(self.kinds)}")
        if self._stopping:
            raise StoreUnavailableError("the server is stopping")
        options = spec.validate(dict(options or {})) if spec.validate else dict(options or {})
        key = dedupe_key(kind, path, options) if spec.dedupe else None
        with self._lock:
            if key is not None and (twin := self.store.find_active(key)) is not None:
                return twin, False
            op = Operation(id=new_operation_id(), kind=kind, path=path, options=options,
                           dedupe_key=key, handle={"labels": {OPERATION_LABEL: ""}},
                           owner=self.owner)
            op.handle["labels"][OPERATION_LABEL] = op.id
            self.store.create(op)
        self._notify(op.id)
        self._queue.put((op.id, False))
        return op, True

    def get(self, op_id: str) -> Operation:
        """Return operation ``op_id`` (``NotFoundError`` when unknown)."""
        op = self.store.get(op_id) if _OP_ID.fullmatch(op_id) else None
        if op is None:
            raise NotFoundError("no such operation", hint="list them with GET operations")
        return op

    def cancel(self, op_id: str) -> Operation:
        """Ask ``op_id`` to stop. Idempotent; ``ConflictError`` when it already finished."""
        op = self.get(op_id)
        if op.state == "cancelled":
            return op
        if op.finished:
            raise ConflictError(f"operation {op_id} already {op.state}",
                                hint="only queued or running operations can be cancelled")
        with self._lock:
            self.store.update(op_id, cancel_requested=True)
            done = self.store.transition(op_id, "cancelled", from_states=("queued",),
                                         error=CancelledError("cancelled before it started")
                                         .to_json())
            if done is not None:
                self._notify(op_id)
                return done
            token = self._tokens.get(op_id)
        if token is not None:
            token.cancel()
        return self.get(op_id)

    def events(self, op_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        """Return the events of ``op_id`` after sequence number ``after``."""
        self.get(op_id)
        return self.store.events(op_id, after, limit)

    def subscribe(self, op_id: str, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` (from any thread) whenever ``op_id`` gets an event."""
        with self._lock:
            self._listeners.setdefault(op_id, set()).add(callback)

        def unsubscribe() -> None:
            with self._lock:
                self._listeners.get(op_id, set()).discard(callback)

        return unsubscribe

    def stats(self) -> dict[str, int]:
        """Return counts for the status endpoint."""
        ops = self.store.non_terminal()
        return {"queued": sum(o.state == "queued" for o in ops),
                "running": sum(o.state == "running" for o in ops),
                "limit": self.config.concurrency_limit}

    # ----- workers -------------------------------------------------------------------------
    def _watch_cancels(self, interval: float = 1.0) -> None:
        """Pass on cancels requested through the database (another server, process or CLI)."""
        while not self._stopping:
            time.sleep(interval)
            with self._lock:
                running = list(self._tokens)
            try:
                wanted = self.store.cancel_requested(running)
            except StoreUnavailableError:
                continue
            with self._lock:
                for op_id in wanted:
                    if op_id in self._tokens:
                        self._tokens[op_id].cancel()

    def _worker(self) -> None:
        while True:
            item = self._queue.get()
            if item is None or self._stopping:
                return
            try:
                self._execute(*item)
            except Exception:  # a worker must survive anything (store errors included)
                if not self._stopping:  # after shutdown the store is closed: expected
                    log.exception("envpack: operation %s crashed its worker", item[0])

    def _execute(self, op_id: str, resumed: bool) -> None:
        op = self.store.get(op_id)
        kind = self._kinds.get(op.kind) if op else None
        if op is None or kind is None or op.finished:
            return
        token = CancelToken()
        with self._lock:  # registered before the transition, so a racing cancel() finds it
            self._tokens[op_id] = token
        if not resumed:
            op = self.store.transition(op_id, "running", from_states=("queued",),
                                       attempt=op.attempt + 1, owner=self.owner)
            if op is None:
                self._tokens.pop(op_id, None)
                return  # cancelled (or taken by another server) while queued
            self._notify(op_id)
        if op.cancel_requested:
            token.cancel()
        runner = kind.resume if resumed and kind.resume else kind.run
        try:
            result = runner(OperationContext(self, op, resumed), self._reporter(op_id), token)
        except LostError as exc:
            self._finish(op_id, "lost", error=self.scrub_json(exc.to_json()))
        except EnvpackError as exc:
            state = "cancelled" if token.cancelled or isinstance(exc, CancelledError) else "failed"
            self._finish(op_id, state, error=self.scrub_json(error_json(exc)))
        except Exception:
            log.exception("envpack: operation %s (%s) failed unexpectedly", op_id, op.kind)
            state = "cancelled" if token.cancelled else "failed"
            self._finish(op_id, state, error={
                "error": "InternalError", "reason": "internal", "hint": None,
                "message": "internal error (details are in the server log)"})
        else:
            self._finish(op_id, "succeeded", result=self.scrub_json(result), progress=1.0)
        finally:
            with self._lock:
                self._tokens.pop(op_id, None)
                self._log_counts.pop(op_id, None)

    def _finish(self, op_id: str, state: str, **fields: Any) -> None:
        if self._stopping:
            return  # detached: the next start reconciles this row
        if self.store.transition(op_id, state, **fields) is not None:
            self._notify(op_id)

    def _reporter(self, op_id: str) -> Callable[[ProgressEvent], None]:
        def report(event: ProgressEvent) -> None:
            if self._stopping:
                return
            data = event.to_json()
            data["message"] = self.scrub(truncate(str(data.get("message", ""))))
            if event.kind == "log":
                count = self._log_counts.get(op_id, 0) + 1
                self._log_counts[op_id] = count
                if count > self.config.max_log_events:
                    if count == self.config.max_log_events + 1:
                        self._emit(op_id, "progress", ProgressEvent(
                            event.stage, "log truncated (max_log_events)", "warning").to_json())
                    return
            else:
                fields: dict[str, Any] = {"stage": event.stage, "message": data["message"][:500]}
                if event.progress is not None:
                    fields["progress"] = max(0.0, min(1.0, float(event.progress)))
                self.store.update(op_id, **fields)
            self._emit(op_id, "progress", data)

        return report

    def scrub(self, text: str) -> str:
        """Replace the contents root in ``text`` by nothing (messages name API paths only)."""
        root = getattr(self.paths, "root_dir", None)
        return scrub_path(text, str(root)) if root else text

    def scrub_json(self, value: Any) -> Any:
        """:meth:`scrub` every string inside ``value``."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, list):
            return [self.scrub_json(v) for v in value]
        if isinstance(value, dict):
            return {k: self.scrub_json(v) for k, v in value.items()}
        return value

    def _emit(self, op_id: str, type_: str, data: dict[str, Any]) -> None:
        self.store.add_event(op_id, type_, data)
        self._notify(op_id)

    def _notify(self, op_id: str) -> None:
        with self._lock:
            listeners = list(self._listeners.get(op_id, ()))
        for callback in listeners:
            try:
                callback()
            except Exception:  # a listener's loop may be closing: never fail the operation
                log.debug("envpack: event listener failed", exc_info=True)


NETWORK_FS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p", "afs",
                        "ceph", "glusterfs", "lustre", "gpfs"})


def on_network_fs(path: str, mounts: str = "/proc/self/mounts") -> bool:
    """Whether ``path`` lies on a network filesystem (by the longest matching mount point)."""
    if path == ":memory:":
        return False
    try:
        with open(mounts, encoding="utf-8", errors="replace") as fh:
            table = [line.split()[1:3] for line in fh if len(line.split()) >= 3]
    except OSError:
        return False
    target = Path(path).absolute()
    best, fstype = "", ""
    for point, kind in table:
        point = point.replace("\\040", " ")
        if (target == Path(point) or Path(point) in target.parents) and len(point) > len(best):
            best, fstype = point, kind
    return fstype in NETWORK_FS


def owner_alive(owner: str) -> bool:
    """Whether the server ``"host:pid"`` may still be running (other hosts: assume it is)."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
