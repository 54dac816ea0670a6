"""``OperationStore``: SQLite persistence of operations and their numbered event logs."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .model import TERMINAL, TRANSITIONS, Event, Operation, StoreUnavailableError

log = logging.getLogger(__name__)

_COLUMNS = (
    "id",
    "kind",
    "state",
    "path",
    "options",
    "progress",
    "stage",
    "message",
    "result",
    "error",
    "dedupe_key",
    "handle",
    "cancel_requested",
    "attempt",
    "created",
    "updated",
    "owner",
)
SCHEMA_VERSION = 2
MAX_EVENTS = 50_000
TRUNCATED = {
    "stage": "events",
    "kind": "warning",
    "message": "later events of this operation were dropped (max_events per operation)",
    "progress": None,
}
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


class OperationStore:
    """SQLite persistence of operations and their event logs (thread-safe, one connection).

    Parameters
    ----------
    path
        The database file (its folder is created), or ``":memory:"``.
    busy_timeout
        Seconds to wait for a lock held by another process before failing with 503.
    max_events
        Events kept per operation (RELIABILITY L6): the last one kept says that later ones were
        dropped; state changes are always written.
    """

    def __init__(
        self, path: str | Path, busy_timeout: float = 5.0, max_events: int = MAX_EVENTS
    ) -> None:
        self.path = str(path)
        self.max_events = max(10, int(max_events))
        self._counts: dict[str, int] = {}
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
            from ..safefs import private_dir, private_file

            private_dir(Path(self.path).parent)
            private_file(self.path)  # 0600 from creation (RELIABILITY L8)
        db = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=self._busy_ms / 1000
        )
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
        log.error(
            "envpack: the operations database %s was unreadable (%s); moved it aside to "
            "%s.corrupt-%s and started a new one",
            self.path,
            exc,
            self.path,
            stamp,
        )

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
                raise StoreUnavailableError(
                    f"operations database error: {exc}", hint="try again in a moment"
                ) from None
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
            db.execute(
                f"INSERT INTO operations ({','.join(_COLUMNS)}) "  # noqa: S608 - fixed names
                f"VALUES ({','.join('?' * len(_COLUMNS))})",
                values,
            )
            self._insert_event(db, op.id, "state", {"state": op.state})
        return op

    def get(self, op_id: str) -> Operation | None:
        """Return the operation ``op_id``, or None."""
        with self._cursor() as db:
            row = db.execute(
                f"SELECT {','.join(_COLUMNS)} FROM operations "  # noqa: S608
                "WHERE id = ?",
                (op_id,),
            ).fetchone()
        return self._row(row) if row else None

    def find(
        self, *, kind: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[Operation]:
        """Return operations, newest first, optionally filtered."""
        where, args = [], []
        for name, value in (("kind", kind), ("state", state)):
            if value is not None:
                where.append(f"{name} = ?")
                args.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self._cursor() as db:
            rows = db.execute(
                f"SELECT {','.join(_COLUMNS)} FROM operations {clause} "  # noqa: S608
                "ORDER BY created DESC, rowid DESC LIMIT ?",
                (*args, limit),
            )
            return [self._row(r) for r in rows.fetchall()]

    def non_terminal(self) -> list[Operation]:
        """Return queued and running operations, oldest first (what a restart must reconcile)."""
        with self._cursor() as db:
            rows = db.execute(
                f"SELECT {','.join(_COLUMNS)} FROM operations "  # noqa: S608
                "WHERE state IN ('queued', 'running') ORDER BY created, rowid"
            )
            return [self._row(r) for r in rows.fetchall()]

    def claim(self, op_id: str, previous: str | None, owner: str) -> bool:
        """Compare-and-set the owner of a running row (two starting servers: one wins)."""
        with self._cursor(write=True) as db:
            return (
                db.execute(
                    "UPDATE operations SET owner = ? WHERE id = ? AND state = 'running' "
                    "AND owner IS ?",
                    (owner, op_id, previous),
                ).rowcount
                == 1
            )

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
            row = db.execute(
                f"SELECT {','.join(_COLUMNS)} FROM operations "  # noqa: S608
                "WHERE dedupe_key = ? AND state IN ('queued', 'running') "
                "ORDER BY created LIMIT 1",
                (key,),
            ).fetchone()
        return self._row(row) if row else None

    def update(self, op_id: str, **fields: Any) -> None:
        """Set non-state fields (progress, stage, message, handle, cancel_requested...)."""
        if "state" in fields or not fields:
            raise ValueError("state changes go through transition()")
        self._set(op_id, fields, None)

    def transition(
        self, op_id: str, to: str, *, from_states: tuple[str, ...] | None = None, **fields: Any
    ) -> Operation | None:
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

    def _set(
        self,
        op_id: str,
        fields: dict[str, Any],
        states: tuple[str, ...] | None,
        event: dict[str, Any] | None = None,
    ) -> bool:
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
    def _insert_event(
        db: sqlite3.Connection, op_id: str, type_: str, data: dict[str, Any]
    ) -> Event:
        now = time.time()
        cur = db.execute(
            "INSERT INTO events (op_id, time, type, data) VALUES (?, ?, ?, ?)",
            (op_id, now, type_, json.dumps(data)),
        )
        return Event(int(cur.lastrowid or 0), op_id, now, type_, data)

    def add_event(self, op_id: str, type_: str, data: dict[str, Any]) -> Event | None:
        """Append an event to ``op_id``'s log and return it with its sequence number; None when
        the operation already has ``max_events`` events (the last kept one says so)."""
        with self._cursor(write=True) as db:
            count = self._counts.get(op_id)
            if count is None:
                row = db.execute("SELECT COUNT(*) FROM events WHERE op_id = ?", (op_id,))
                count = int(row.fetchone()[0])
            self._counts[op_id] = count + 1
            if count >= self.max_events:
                return None
            if count == self.max_events - 1:
                type_, data = "progress", TRUNCATED
            return self._insert_event(db, op_id, type_, data)

    def events(self, op_id: str, after: int = 0, limit: int = 1000) -> list[Event]:
        """Return ``op_id``'s events with ``seq > after``, oldest first."""
        with self._cursor() as db:
            rows = db.execute(
                "SELECT seq, op_id, time, type, data FROM events WHERE op_id = ? "
                "AND seq > ? ORDER BY seq LIMIT ?",
                (op_id, after, limit),
            )
            return [Event(s, o, t, ty, json.loads(d)) for s, o, t, ty, d in rows.fetchall()]

    def prune(self, older_than: float) -> int:
        """Delete finished operations (and their events) last updated before ``older_than``."""
        terminal = tuple(sorted(TERMINAL))
        marks = ",".join("?" * len(terminal))
        with self._cursor(write=True) as db:
            old = f"SELECT id FROM operations WHERE state IN ({marks}) AND updated < ?"  # noqa: S608
            db.execute(
                f"DELETE FROM events WHERE op_id IN ({old})",  # noqa: S608 - fixed
                (*terminal, older_than),
            )
            return int(
                db.execute(
                    f"DELETE FROM operations WHERE id IN ({old})",  # noqa: S608
                    (*terminal, older_than),
                ).rowcount
            )

    def close(self) -> None:
        """Close the connection (later calls raise :class:`StoreUnavailableError`)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


NETWORK_FS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "fuse.sshfs",
        "9p",
        "afs",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
    }
)


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
