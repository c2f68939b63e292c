"""Batch cutting rules (engine/batching.py)."""

from __future__ import annotations

from tideflow.engine.batching import Batcher, Limits, estimate_size
from tideflow.events import ChangeEvent, Column, Commit, Message, Op, TableSchema

TABLE = TableSchema(
    "public", "t", (Column("id", "int4", "int", False, True), Column("v", "text", "text")), ("id",)
)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ev(i: int, text: str = "x") -> ChangeEvent:
    return ChangeEvent(Op.CREATE, TABLE, None, {"id": i, "v": text}, {"lsn": i}, 1000 + i)


def commit(lsn: int, heartbeat: bool = False) -> Commit:
    return Commit({"lsn": lsn}, 5000 + lsn, heartbeat)


def test_closes_at_max_events_mid_transaction_keeping_previous_commit() -> None:
    b = Batcher(Limits(max_events=3, max_wait=10), {"lsn": 1}, clock=Clock())
    closed = b.add([ev(2), ev(3), ev(4), ev(5)], more_available=True)
    assert len(closed) == 1
    assert [e.position["lsn"] for e in closed[0].events] == [2, 3, 4]
    assert closed[0].position == {"lsn": 1}  # mid-transaction: the previous commit


def test_closes_at_commit_when_nothing_more_is_available() -> None:
    b = Batcher(Limits(max_events=100, max_wait=10), None, clock=Clock())
    assert b.add([ev(1), ev(2), commit(3)], more_available=True) == []
    closed = b.add([ev(4), commit(5)], more_available=False)
    assert len(closed) == 1
    assert len(closed[0].events) == 3
    assert closed[0].position == {"lsn": 5}
    assert closed[0].last_commit_ts_ms == 5005


def test_does_not_close_mid_transaction_when_idle_until_max_wait() -> None:
    clock = Clock()
    b = Batcher(Limits(max_events=100, max_wait=0.1), {"lsn": 1}, clock=clock)
    assert b.add([ev(2), commit(3), ev(4)], more_available=False) == []
    left = b.time_left()
    assert left is not None and 0 < left <= 0.1
    clock.now += 0.1
    closed = b.add([], more_available=False)
    assert len(closed) == 1 and len(closed[0].events) == 2
    assert closed[0].position == {"lsn": 3}


def test_position_carries_over_to_following_batches() -> None:
    b = Batcher(Limits(max_events=2, max_wait=10), None, clock=Clock())
    closed = b.add([ev(1), commit(2), ev(3), ev(4), ev(5), ev(6)], more_available=True)
    assert [c.position for c in closed] == [{"lsn": 2}, {"lsn": 2}]
    assert b.open_batch.position == {"lsn": 2}


def test_closes_at_byte_budget() -> None:
    big = "y" * 10_000
    b = Batcher(Limits(max_events=1000, max_bytes=25_000, max_wait=10), None, clock=Clock())
    closed = b.add([ev(i, big) for i in range(10)], more_available=True)
    assert closed, "the byte budget must close batches"
    assert all(c.bytes >= 25_000 for c in closed)
    assert all(len(c.events) <= 3 for c in closed)


def test_heartbeats_become_empty_batches_on_the_time_rule_only() -> None:
    clock = Clock()
    b = Batcher(Limits(max_events=100, max_wait=0.1), {"lsn": 1}, clock=clock)
    assert b.add([commit(10, heartbeat=True)], more_available=False) == []
    clock.now += 0.2
    closed = b.add([commit(20, heartbeat=True)], more_available=False)
    assert len(closed) == 1
    assert closed[0].events == [] and closed[0].position == {"lsn": 20}


def test_messages_alone_produce_no_batch() -> None:
    clock = Clock()
    b = Batcher(Limits(max_wait=0.1), {"lsn": 1}, clock=clock)
    b.add([Message("wm", b"x", {"lsn": 2})], more_available=False)
    clock.now += 1
    assert b.add([], more_available=False) == []


def test_size_estimate_grows_with_values() -> None:
    assert estimate_size(ev(1, "a" * 1000)) > estimate_size(ev(1, "a")) + 900
