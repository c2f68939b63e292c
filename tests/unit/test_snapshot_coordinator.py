"""The coordinator with a fake reader and a fake stream: rows enter at the high watermark,
window changes win, progress is persisted only after the acknowledgement (resume point)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tideflow.engine.snapshot import nudge
from tideflow.engine.snapshot.coordinator import Coordinator, Readers
from tideflow.engine.snapshot.progress import Progress
from tideflow.engine.snapshot.reader import ChunkRows, TablePlan, TextKey
from tideflow.engine.snapshot.watermark import PREFIX
from tideflow.events import ChangeEvent, Column, Commit, Message, Op, Record, TableSchema
from tideflow.store.db import Store
from tideflow.store.models.runtime import SnapshotTable

T = TableSchema(
    "public", "t", (Column("id", "int8", "int", False, True), Column("v", "text", "text")), ("id",)
)


class FakeDb:
    """A table of ids 1..n and a WAL of watermark messages (thread-safe)."""

    def __init__(self, n: int) -> None:
        self.rows = {i: f"v{i}" for i in range(1, n + 1)}
        self.wal: list[Message] = []
        self.lsn = 0
        self.lock = threading.Lock()
        self.reads: list[tuple[TextKey | None, TextKey | None]] = []

    def emit(self, body: str) -> None:
        with self.lock:
            self.lsn += 10
            self.wal.append(Message(PREFIX, body.encode(), {"lsn": self.lsn}, True))


class FakeReader:
    def __init__(self, db: FakeDb) -> None:
        self.db = db

    def plan(self, table: str, surrogate_key: str | None) -> TablePlan:
        return TablePlan(T, ("id",), len(self.db.rows))

    def check_filter(self, table: str, predicate: str) -> None:
        pass

    def boundary(
        self, plan: TablePlan, after: TextKey | None, size: int, predicate: str | None
    ) -> TextKey | None:
        keys = sorted(k for k in self.db.rows if after is None or k > int(after[0]))
        return (str(keys[size - 1]),) if len(keys) >= size else None

    def watermark(self, body: str) -> None:
        self.db.emit(body)

    def read_chunk(
        self, plan: TablePlan, after: TextKey | None, upto: TextKey | None, predicate: str | None
    ) -> ChunkRows:
        with self.db.lock:
            self.db.reads.append((after, upto))
            keys = sorted(
                k
                for k in self.db.rows
                if (after is None or k > int(after[0])) and (upto is None or k <= int(upto[0]))
            )
            rows = [{"id": k, "v": self.db.rows[k]} for k in keys]
        return ChunkRows(rows, (str(keys[-1]),) if keys else None)

    def scan(self, plan: TablePlan, predicate: str | None, size: int) -> Iterator[list[Any]]:
        yield [{"id": k, "v": v} for k, v in sorted(self.db.rows.items())]

    def close(self) -> None:
        pass


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path / 'meta.db'}")
    s.migrate()
    return s


def request(store: Store, task_id: str, **extra: Any) -> None:
    with store.session() as s:
        s.add(
            SnapshotTable(
                id=task_id,
                request_id="r",
                source_id="src",
                table="public.t",
                topic_id="source_src.public.t",
                kind=extra.pop("kind", "incremental"),
                status="pending",
                **extra,
            )
        )


def row(store: Store, task_id: str) -> SnapshotTable:
    with store.session() as s:
        r = s.get(SnapshotTable, task_id)
        assert r is not None
        s.expunge(r)
        return r


def pump(coord: Coordinator, db: FakeDb, out: list[ChangeEvent], extra: list[Record]) -> None:
    """One poll: take the WAL so far, add ``extra`` changes after the first mark."""
    with db.lock:
        records: list[Record] = []
        for m in db.wal:
            records.append(m)
            if extra:
                records += extra
                extra.clear()
        db.wal.clear()
    if coord.live:
        for part in coord.process(records):
            out += [r for r in part if isinstance(r, ChangeEvent)]


def run_until(
    coord: Coordinator, db: FakeDb, store: Store, task: str, extra: list[Record]
) -> list[ChangeEvent]:
    out: list[ChangeEvent] = []
    deadline = time.monotonic() + 20
    while row(store, task).status != "completed":
        assert time.monotonic() < deadline, row(store, task).status
        pump(coord, db, out, extra)
        coord.on_ack({"lsn": db.lsn + 1})
        time.sleep(0.01)
    return out


def test_rows_enter_at_high_marks_and_window_changes_win(store: Store) -> None:
    db = FakeDb(25)
    request(store, "a")
    coord = Coordinator("src", store, Readers(lambda: FakeReader(db), 10, 2))
    coord.start()
    try:
        deleted = ChangeEvent(Op.DELETE, T, {"id": 3}, None, {"lsn": 1}, 0)
        updated = ChangeEvent(Op.UPDATE, T, {"id": 4}, {"id": 4, "v": "new"}, {"lsn": 1}, 0)
        out = run_until(coord, db, store, "a", [deleted, updated])
    finally:
        coord.close()
    reads = [e for e in out if e.op is Op.READ]
    assert all(e.snapshot and e.position == {} for e in reads)
    got = {e.after["id"]: e.after["v"] for e in reads if e.after is not None}
    assert 3 not in got and got[4] == "new"
    assert set(got) == set(range(1, 26)) - {3}
    done = row(store, "a")
    assert (done.chunks_done, done.rows_read) == (3, 25)


def test_progress_waits_for_the_ack_and_resumes_after_last_key(store: Store) -> None:
    db = FakeDb(30)
    request(store, "b")
    coord = Coordinator("src", store, Readers(lambda: FakeReader(db), 10, 1))
    coord.start()
    out: list[ChangeEvent] = []
    try:
        deadline = time.monotonic() + 10
        while len([e for e in out if e.op is Op.READ]) < 10:
            assert time.monotonic() < deadline
            pump(coord, db, out, [])
            time.sleep(0.01)
        time.sleep(1.5)
        assert row(store, "b").last_key is None  # emitted, not acknowledged: not recorded
        coord.on_ack({"lsn": 25})  # past the first chunk's high mark (lsn 20)
        wait = time.monotonic() + 5
        while row(store, "b").last_key is None:
            assert time.monotonic() < wait
            time.sleep(0.05)
    finally:
        coord.close()  # a crash: the rest was never acknowledged
    assert row(store, "b").last_key == ["10"]
    db.reads.clear()
    again = Coordinator("src", store, Readers(lambda: FakeReader(db), 10, 1))
    again.start()
    try:
        out = run_until(again, db, store, "b", [])
    finally:
        again.close()
    assert db.reads[0] == (("10",), ("20",))  # resumed after the durable last key
    assert {e.after["id"] for e in out if e.after is not None} == set(range(11, 31))
    assert row(store, "b").rows_read == 30


def test_blocking_copy_pauses_the_stream_and_completes(store: Store) -> None:
    db = FakeDb(7)
    request(store, "c", kind="blocking")
    coord = Coordinator("src", store, Readers(lambda: FakeReader(db), 10, 1))
    coord.start()
    try:
        out = run_until(coord, db, store, "c", [Commit({"lsn": 2}, 0)])
    finally:
        coord.close()
    assert sorted(e.after["id"] for e in out if e.after is not None) == list(range(1, 8))
    assert Progress(store, "src").active() == []


def test_a_nudge_starts_a_request_without_waiting_for_the_next_poll(store: Store) -> None:
    db = FakeDb(5)
    coord = Coordinator("src", store, Readers(lambda: FakeReader(db), 10, 1))
    coord.reload_every = 3600.0  # only a nudge can make it read the store again
    coord.start()
    try:
        time.sleep(0.3)  # the first read of the store happened: nothing requested then
        request(store, "n")
        nudge.nudge("other-source")  # another source's nudge is not this one's
        time.sleep(0.6)
        assert row(store, "n").status == "pending"
        nudge.nudge("src")
        out = run_until(coord, db, store, "n", [])
    finally:
        coord.close()
    assert {e.after["id"] for e in out if e.after is not None} == set(range(1, 6))
    nudge.nudge("src")  # a closed coordinator no longer listens: nothing to call


def test_nudge_listeners_stop() -> None:
    calls: list[str] = []
    stop_a = nudge.listen("s", lambda: calls.append("a"))
    stop_b = nudge.listen("s", lambda: calls.append("b"))
    nudge.nudge("s")
    stop_a()
    nudge.nudge("s")
    stop_b()
    nudge.nudge("s")
    assert calls == ["a", "b", "b"]
