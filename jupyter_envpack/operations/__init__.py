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

from .manager import Kind, OperationContext, OperationManager, Paths, Runner, owner_alive
from .model import (
    MAX_LINE,
    OPERATION_LABEL,
    STATES,
    TERMINAL,
    TRANSITIONS,
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
from .store import SCHEMA_VERSION, OperationStore, on_network_fs

__all__ = [
    "MAX_LINE",
    "OPERATION_LABEL",
    "SCHEMA_VERSION",
    "STATES",
    "TERMINAL",
    "TRANSITIONS",
    "Event",
    "Kind",
    "LostError",
    "Operation",
    "OperationContext",
    "OperationManager",
    "OperationStore",
    "Paths",
    "Runner",
    "StoreUnavailableError",
    "dedupe_key",
    "error_json",
    "new_operation_id",
    "on_network_fs",
    "owner_alive",
    "scrub_path",
    "truncate",
]
