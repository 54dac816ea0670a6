"""OperationStore + OperationManager without a server: state machine, limits, dedupe, cancel,
reconcile after a restart, persistence (RELIABILITY F6, F7, F8, J2, J3, J4, J5)."""

from __future__ import annotations

import multiprocessing
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from jupyter_envpack.config import EnvPack
from jupyter_envpack.errors import ConflictError, InputError, NotFoundError
from jupyter_envpack.operations import (
    STATES,
    TERMINAL,
    TRANSITIONS,
    Kind,
    LostError,
    Operation,
    OperationManager,
    OperationStore,
    StoreUnavailableError,
    new_operation_id,
)
from jupyter_envpack.server.paths import ContentsPaths


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.01)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    (root / "nb.ipynb").write_text(
        '{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
    )
    (root / "other.ipynb").write_text((root / "nb.ipynb").read_text())
    return root


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ops.sqlite"


def make_manager(
    db_path: Path, root: Path, fake_work: Any, limit: int = 2, start: bool = True, **kind_args: Any
) -> OperationManager:
    config = EnvPack(concurrency_limit=limit, database_path=str(db_path), max_log_events=100)
    manager = OperationManager(OperationStore(db_path), config, ContentsPaths(root))
    manager.register_kind(
        Kind("fake", fake_work.run, validate=fake_work.validate, dedupe=True, **kind_args)
    )
    if start:
        manager.start()
    return manager


@pytest.fixture
def manager(db_path: Path, root: Path, fake_work: Any) -> OperationManager:
    m = make_manager(db_path, root, fake_work)
    yield m
    fake_work.release.set()
    m.shutdown()
    m.store.close()


def state_of(manager: OperationManager, op_id: str) -> str:
    return manager.get(op_id).state


@pytest.mark.reliability("J5")
@pytest.mark.parametrize("start", STATES)
@pytest.mark.parametrize("to", STATES)
def test_transition_table_is_enforced(tmp_path: Path, start: str, to: str) -> None:
    # Given an operation in state `start`
    store = OperationStore(tmp_path / "t.sqlite")
    op = store.create(Operation(id=new_operation_id(), kind="fake", path="nb.ipynb", state=start))
    # When it is moved to `to`
    moved = store.transition(op.id, to)
    # Then only the transitions of the table succeed, and terminal states never change
    assert (moved is not None) == (to in TRANSITIONS[start])
    assert store.get(op.id).state == (to if moved else start)
    if start in TERMINAL:
        assert moved is None


def test_submit_runs_and_records_events(manager: OperationManager, fake_work: Any) -> None:
    op, created = manager.submit("fake", "nb.ipynb", {"lines": 3})
    assert created and op.state == "queued" and len(op.id) == 32
    wait_for(lambda: state_of(manager, op.id) == "succeeded")
    done = manager.get(op.id)
    assert done.result == {"ok": True, "path": "nb.ipynb", "notebook_name": "nb.ipynb"}
    assert done.progress == 1.0 and done.attempt == 1
    events = manager.events(op.id)
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert [e.data["state"] for e in events if e.type == "state"] == [
        "queued",
        "running",
        "succeeded",
    ]
    assert sum(e.type == "progress" and e.data["kind"] == "log" for e in events) == 3
    # resumable: only what comes after a sequence number
    assert manager.events(op.id, after=events[2].seq) == events[3:]


def test_unknown_kind_and_bad_options_are_input_errors(manager: OperationManager) -> None:
    with pytest.raises(InputError):
        manager.submit("nope", "nb.ipynb", {})
    with pytest.raises(InputError):
        manager.submit("fake", "nb.ipynb", {"evil": 1})
    assert manager.store.find() == []


@pytest.mark.reliability("F8")
def test_concurrency_limit_queues_the_rest(manager: OperationManager, fake_work: Any) -> None:
    # Given a limit of 2 and 5 different blocking operations
    ops = [manager.submit("fake", "nb.ipynb", {"wait": True, "tag": i})[0] for i in range(5)]
    # Then two run and three wait queued
    wait_for(lambda: fake_work.running == 2)
    time.sleep(0.2)
    states = [state_of(manager, op.id) for op in ops]
    assert states.count("running") == 2 and states.count("queued") == 3
    assert manager.stats() == {"queued": 3, "running": 2, "limit": 2}
    # When released, all finish and never more than 2 ran at once
    fake_work.release.set()
    wait_for(lambda: all(state_of(manager, op.id) == "succeeded" for op in ops))
    assert fake_work.max_running == 2


@pytest.mark.reliability("F7")
def test_identical_requests_attach_to_one_operation(
    manager: OperationManager, fake_work: Any
) -> None:
    # Given 10 concurrent identical submissions
    results: list[tuple[Operation, bool]] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(manager.submit("fake", "nb.ipynb", {"wait": True}))
        )
        for _ in range(10)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Then one operation exists, every caller got its id, only one was new
    assert len({op.id for op, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    # a different notebook or option is a different operation
    other, created = manager.submit("fake", "other.ipynb", {"wait": True})
    assert created and other.id != results[0][0].id
    fake_work.release.set()
    first = results[0][0].id
    wait_for(lambda: {state_of(manager, other.id), state_of(manager, first)} == {"succeeded"})
    assert len(fake_work.calls) == 2
    # after it finished, the same request starts a new operation
    again, created = manager.submit("fake", "nb.ipynb", {"wait": True})
    assert created and again.id != results[0][0].id


@pytest.mark.reliability("J5", "F6")
def test_cancel_queued_running_finished(manager: OperationManager, fake_work: Any) -> None:
    running = [manager.submit("fake", "nb.ipynb", {"wait": True, "tag": i})[0] for i in range(2)]
    queued, _ = manager.submit("fake", "nb.ipynb", {"wait": True, "tag": 9})
    wait_for(lambda: fake_work.running == 2)
    # queued → cancelled at once, never runs
    assert manager.cancel(queued.id).state == "cancelled"
    # running → cancel requested → cancelled (the runner saw the token)
    op = manager.cancel(running[0].id)
    assert op.cancel_requested
    wait_for(lambda: state_of(manager, running[0].id) == "cancelled")
    assert manager.get(running[0].id).error["reason"] == "cancelled"
    # twice: idempotent
    assert manager.cancel(running[0].id).state == "cancelled"
    # finished → 409
    fake_work.release.set()
    wait_for(lambda: state_of(manager, running[1].id) == "succeeded")
    with pytest.raises(ConflictError):
        manager.cancel(running[1].id)
    assert queued.id not in fake_work.calls
    with pytest.raises(NotFoundError):
        manager.cancel("0" * 32)
    with pytest.raises(NotFoundError):
        manager.get("../../etc")


def test_failures_are_recorded_without_server_paths(
    manager: OperationManager, root: Path, caplog: Any
) -> None:
    failed, _ = manager.submit("fake", "nb.ipynb", {"fail": True})
    crashed, _ = manager.submit("fake", "nb.ipynb", {"crash": True})
    wait_for(
        lambda: (
            state_of(manager, crashed.id) == "failed" and state_of(manager, failed.id) == "failed"
        )
    )
    error = manager.get(failed.id).error
    assert error["reason"] == "build-failed" and error["step"] == "RUN false"
    assert error["log_tail"] == ["boom"]
    crash = manager.get(crashed.id).error
    assert crash["reason"] == "internal" and str(root) not in str(crash)
    assert "unexpected crash" in caplog.text  # the details go to the server log only


def test_log_lines_are_capped_and_truncated(manager: OperationManager) -> None:
    op, _ = manager.submit("fake", "nb.ipynb", {"lines": 150})
    wait_for(lambda: state_of(manager, op.id) == "succeeded")
    events = manager.events(op.id)
    logs = [e for e in events if e.type == "progress" and e.data["kind"] == "log"]
    assert len(logs) == 100
    assert any("log truncated" in e.data.get("message", "") for e in events)


@pytest.mark.reliability("J1")
def test_restart_requeues_resumes_or_loses(db_path: Path, root: Path, fake_work: Any) -> None:
    # Given rows a stopped server left behind (queued, running with and without resume)
    store = OperationStore(db_path)
    rows = {
        name: store.create(
            Operation(id=new_operation_id(), kind=kind, path="nb.ipynb", state=state)
        )
        for name, kind, state in [
            ("queued", "fake", "queued"),
            ("run", "fake", "running"),
            ("followed", "resumable", "running"),
            ("gone", "resumable", "running"),
            ("alien", "unknown", "running"),
        ]
    }
    store.close()
    resumed: list[str] = []

    def resume(op: Any, reporter: Any, cancel: Any) -> dict[str, Any]:
        if op.id == rows["gone"].id:
            raise LostError("container gone")
        resumed.append(op.id)
        return {"followed": True}

    # When a new manager starts on the same database
    manager = make_manager(db_path, root, fake_work, start=False)
    manager.register_kind(Kind("resumable", fake_work.run, resume=resume))
    manager.start()
    try:
        final = {n: op.id for n, op in rows.items()}
        wait_for(
            lambda: all(state_of(manager, i) not in ("queued", "running") for i in final.values())
        )
        # Then nothing stays running: queued ran, resumable was followed, the rest are lost
        assert state_of(manager, final["queued"]) == "succeeded"
        assert state_of(manager, final["followed"]) == "succeeded"
        assert manager.get(final["followed"]).result == {"followed": True}
        assert resumed == [final["followed"]]
        for name in ("run", "gone", "alien"):
            op = manager.get(final[name])
            assert op.state == "lost" and op.error["reason"] == "lost", name
        assert final["run"] not in fake_work.calls  # no duplicate execution
    finally:
        manager.shutdown()
        manager.store.close()


def test_shutdown_detaches_running_work(db_path: Path, root: Path, fake_work: Any) -> None:
    manager = make_manager(db_path, root, fake_work)
    op, _ = manager.submit("fake", "nb.ipynb", {"wait": True})
    wait_for(lambda: fake_work.running == 1)
    manager.shutdown()
    fake_work.release.set()
    wait_for(lambda: fake_work.running == 0)
    # the row stays running for the next start to reconcile; no late write happened
    assert manager.store.get(op.id).state == "running"
    manager.store.close()


def test_old_finished_operations_are_pruned_on_start(
    db_path: Path, root: Path, fake_work: Any
) -> None:
    store = OperationStore(db_path)
    old = store.create(
        Operation(
            id=new_operation_id(),
            kind="fake",
            path="nb.ipynb",
            state="succeeded",
            created=0,
            updated=0,
        )
    )
    store.add_event(old.id, "progress", {"message": "x"})
    recent = store.create(
        Operation(id=new_operation_id(), kind="fake", path="nb.ipynb", state="failed")
    )
    running = store.create(
        Operation(
            id=new_operation_id(),
            kind="nope",
            path="nb.ipynb",
            state="queued",
            created=0,
            updated=0,
        )
    )
    store.close()
    manager = make_manager(db_path, root, fake_work)
    try:
        ids = {op.id for op in manager.store.find()}
        assert old.id not in ids and {recent.id, running.id} <= ids
        assert manager.store.events(old.id) == []
    finally:
        manager.shutdown()
        manager.store.close()


@pytest.mark.reliability("J2")
def test_corrupt_database_is_moved_aside(db_path: Path) -> None:
    store = OperationStore(db_path)
    store.create(Operation(id=new_operation_id(), kind="fake", path="nb.ipynb"))
    store.close()
    with open(db_path, "r+b") as fh:
        fh.truncate(100)
    again = OperationStore(db_path)
    assert again.find() == []
    assert list(db_path.parent.glob("ops.sqlite.corrupt-*"))
    again.close()


@pytest.mark.reliability("J3")
def test_locked_database_fails_fast_with_503(db_path: Path) -> None:
    store = OperationStore(db_path, busy_timeout=0.3)
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError) as info:
            store.create(Operation(id=new_operation_id(), kind="fake", path="nb.ipynb"))
        assert info.value.status == 503
        assert time.monotonic() - started < 3
    finally:
        other.execute("ROLLBACK")
        other.close()
        store.close()


def _race(db: str, op_id: str, to: str, go: Any, out: Any) -> None:
    store = OperationStore(db, busy_timeout=10)
    go.wait()
    out.put(store.transition(op_id, to) is not None)
    store.close()


@pytest.mark.reliability("J4")
def test_two_processes_race_to_finish_exactly_one_wins(db_path: Path) -> None:
    store = OperationStore(db_path)
    op = store.create(
        Operation(id=new_operation_id(), kind="fake", path="nb.ipynb", state="running")
    )
    ctx = multiprocessing.get_context("spawn")
    go, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_race, args=(str(db_path), op.id, to, go, out))
        for to in ["cancelled", "succeeded"] * 5
    ]
    for p in procs:
        p.start()
    go.set()
    for p in procs:
        p.join(30)
    wins = [out.get(timeout=5) for _ in procs]
    assert wins.count(True) == 1
    final = store.get(op.id).state
    assert final in ("cancelled", "succeeded")
    assert sum(e.type == "state" for e in store.events(op.id)) == 2  # created + one terminal
    store.close()


@pytest.mark.reliability("A7")
def test_huge_and_hostile_log_lines_are_stored_as_bounded_text(
    manager: OperationManager, root: Path
) -> None:
    from jupyter_envpack.events import ProgressEvent

    hostile = [
        "<img src=x onerror=alert(1)>",
        "\x1b[31mred\x1b[0m",
        "spin\rspin\r",
        "x" * 10**7,
        f"written to {root}/sub/out.ipynb",
    ]

    def noisy(op: Any, reporter: Any, cancel: Any) -> dict[str, Any]:
        for line in hostile:
            reporter(ProgressEvent("build", line))
        return {"where": str(root / "nb.ipynb")}

    manager.register_kind(Kind("noisy", noisy))
    op, _ = manager.submit("noisy", "nb.ipynb", {})
    wait_for(lambda: state_of(manager, op.id) == "succeeded")
    messages = [e.data["message"] for e in manager.events(op.id) if e.type == "progress"]
    assert messages[:3] == hostile[:3]  # kept verbatim as text: escaping is the renderer's job
    assert len(messages[3]) <= 64 * 1024 + 20 and messages[3].endswith("[truncated]")
    assert messages[4] == "written to sub/out.ipynb"  # no server path on the wire
    assert manager.get(op.id).result == {"where": "nb.ipynb"}


V1_SCHEMA = """
CREATE TABLE operations (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, path TEXT NOT NULL,
    options TEXT NOT NULL, progress REAL, stage TEXT, message TEXT, result TEXT, error TEXT,
    dedupe_key TEXT, handle TEXT NOT NULL, cancel_requested INTEGER NOT NULL DEFAULT 0,
    attempt INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, op_id TEXT NOT NULL,
    time REAL NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL);
INSERT INTO operations VALUES ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'build', 'succeeded',
    'nb.ipynb', '{}', 1.0, NULL, NULL, '{"image": "envpack/nb:1"}', NULL, NULL, '{}', 0, 1,
    1.0, 9999999999.0);
PRAGMA user_version = 1;
"""


@pytest.mark.reliability("J2")
def test_a_version_1_database_is_migrated_in_place(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    old = sqlite3.connect(db_path)
    old.executescript(V1_SCHEMA)
    old.close()
    for _ in range(2):  # idempotent
        store = OperationStore(db_path)
        op = store.get("a" * 32)
        assert op is not None and op.result == {"image": "envpack/nb:1"} and op.owner is None
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == 2
        store.close()


@pytest.mark.reliability("J4")
def test_a_second_server_leaves_live_work_alone_and_cancels_through_the_db(
    db_path: Path, root: Path, fake_work: Any
) -> None:
    # Given server A running an operation
    first = make_manager(db_path, root, fake_work)
    op, _ = first.submit("fake", "nb.ipynb", {"wait": True})
    wait_for(lambda: fake_work.running == 1)
    # When server B (another live process on the same database) starts
    second = make_manager(db_path, root, fake_work, start=False)
    second.owner = "another-host-for-the-test:1"
    try:
        second.start()
        time.sleep(0.3)
        # Then B neither resumes nor loses A's operation
        assert second.get(op.id).state == "running"
        assert second.get(op.id).owner == first.owner
        # and a cancel asked through B reaches A's worker through the database
        second.cancel(op.id)
        wait_for(lambda: first.get(op.id).state == "cancelled")
    finally:
        for m in (first, second):
            m.shutdown()
            m.store.close()


@pytest.mark.reliability("J1")
def test_rows_of_a_dead_server_are_taken_over(db_path: Path, root: Path, fake_work: Any) -> None:
    store = OperationStore(db_path)
    dead = store.create(
        Operation(
            id=new_operation_id(),
            kind="fake",
            path="nb.ipynb",
            state="queued",
            owner=f"{socket.gethostname()}:999999999",
        )
    )
    live = store.create(
        Operation(
            id=new_operation_id(),
            kind="fake",
            path="nb.ipynb",
            state="queued",
            owner=f"{socket.gethostname()}:1",
        )
    )
    store.close()
    manager = make_manager(db_path, root, fake_work)
    try:
        wait_for(lambda: state_of(manager, dead.id) == "succeeded")
        assert state_of(manager, live.id) == "queued"  # pid 1 is alive: its server's business
    finally:
        manager.shutdown()
        manager.store.close()


@pytest.mark.reliability("J3")
def test_network_filesystems_get_a_rollback_journal(tmp_path: Path) -> None:
    from jupyter_envpack.operations import on_network_fs

    mounts = tmp_path / "mounts"
    mounts.write_text(
        "/dev/sda1 / ext4 rw 0 0\nsrv:/home /home nfs4 rw 0 0\ntmpfs /home/me/local tmpfs rw 0 0\n"
    )
    assert on_network_fs("/home/me/.local/share/jupyter/ops.sqlite", str(mounts))
    assert not on_network_fs("/home/me/local/ops.sqlite", str(mounts))
    assert not on_network_fs("/var/lib/ops.sqlite", str(mounts))
    assert not on_network_fs(":memory:", str(mounts))
    store = OperationStore(tmp_path / "local.sqlite")  # this machine's tmp: WAL
    assert store._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()
