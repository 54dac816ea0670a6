"""``OperationManager``: kinds run in a bounded pool of worker threads; dedupe, cancel, reconcile."""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import CancelledError, ConflictError, EnvpackError, InputError, NotFoundError
from ..events import CancelToken, ProgressEvent
from .model import (
    OP_ID,
    OPERATION_LABEL,
    Event,
    LostError,
    Operation,
    StoreUnavailableError,
    dedupe_key,
    error_json,
    new_operation_id,
    scrub_path,
    truncate,
)
from .store import OperationStore

if TYPE_CHECKING:
    from ..config import EnvPack

log = logging.getLogger(__name__)


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
                log.info(
                    "envpack: forgot %d operations older than %g days",
                    pruned,
                    self.config.retention_days,
                )
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
                self._emit(
                    op.id,
                    "progress",
                    ProgressEvent(
                        op.kind, "server restarted; following the operation again", "info"
                    ).to_json(),
                )
                self._queue.put((op.id, True))
            else:
                why = f"unknown kind {op.kind!r}" if kind is None else "the server stopped"
                self._finish(
                    op.id,
                    "lost",
                    error=LostError(
                        f"{why} while this operation was {op.state}", hint="start it again"
                    ).to_json(),
                )

    # ----- requests ------------------------------------------------------------------------
    def submit(
        self,
        kind: str,
        path: str,
        options: dict[str, Any] | None = None,
    ) -> tuple[Operation, bool]:
        """Queue an operation; return it and whether it is new (False: attached to a twin)."""
        spec = self._kinds.get(kind)
        if spec is None:
            raise InputError(
                f"unknown operation kind {kind!r}", hint=f"one of: {', '.join(self.kinds)}"
            )
        if self._stopping:
            raise StoreUnavailableError("the server is stopping")
        options = spec.validate(dict(options or {})) if spec.validate else dict(options or {})
        key = dedupe_key(kind, path, options) if spec.dedupe else None
        with self._lock:
            if key is not None and (twin := self.store.find_active(key)) is not None:
                return twin, False
            op = Operation(
                id=new_operation_id(),
                kind=kind,
                path=path,
                options=options,
                dedupe_key=key,
                handle={"labels": {OPERATION_LABEL: ""}},
                owner=self.owner,
            )
            op.handle["labels"][OPERATION_LABEL] = op.id
            self.store.create(op)
        self._notify(op.id)
        self._queue.put((op.id, False))
        return op, True

    def get(self, op_id: str) -> Operation:
        """Return operation ``op_id`` (``NotFoundError`` when unknown)."""
        op = self.store.get(op_id) if OP_ID.fullmatch(op_id) else None
        if op is None:
            raise NotFoundError("no such operation", hint="list them with GET operations")
        return op

    def cancel(self, op_id: str) -> Operation:
        """Ask ``op_id`` to stop. Idempotent; ``ConflictError`` when it already finished."""
        op = self.get(op_id)
        if op.state == "cancelled":
            return op
        if op.finished:
            raise ConflictError(
                f"operation {op_id} already {op.state}",
                hint="only queued or running operations can be cancelled",
            )
        with self._lock:
            self.store.update(op_id, cancel_requested=True)
            done = self.store.transition(
                op_id,
                "cancelled",
                from_states=("queued",),
                error=CancelledError("cancelled before it started").to_json(),
            )
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
        return {
            "queued": sum(o.state == "queued" for o in ops),
            "running": sum(o.state == "running" for o in ops),
            "limit": self.config.concurrency_limit,
        }

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
            op = self.store.transition(
                op_id, "running", from_states=("queued",), attempt=op.attempt + 1, owner=self.owner
            )
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
            self._finish(
                op_id,
                state,
                error={
                    "error": "InternalError",
                    "reason": "internal",
                    "hint": None,
                    "message": "internal error (details are in the server log)",
                },
            )
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
                        self._emit(
                            op_id,
                            "progress",
                            ProgressEvent(
                                event.stage, "log truncated (max_log_events)", "warning"
                            ).to_json(),
                        )
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
