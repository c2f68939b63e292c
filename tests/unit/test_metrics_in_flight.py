"""Events in flight and the oldest of them, as the pipeline runner reports them."""

from __future__ import annotations

from tideflow.engine.metrics import UnitMetrics


class _Event:
    def __init__(self, ts: int) -> None:
        self.commit_ts_ms = ts


class _Batch:
    def __init__(self, *ts: int) -> None:
        self.events = [_Event(t) for t in ts]


def test_oldest_pending_follows_durability() -> None:
    m = UnitMetrics(on=True)
    assert m.oldest_pending_ms() is None
    m.note_offered(_Batch(100, 110))  # type: ignore[arg-type]
    m.note_offered(_Batch(200))  # type: ignore[arg-type]
    assert m.as_dict()["in_flight"] == 3 and m.oldest_pending_ms() == 100
    m.note_done(1)  # part of the first batch: its first event is still the oldest
    assert m.oldest_pending_ms() == 100
    m.note_done(1)
    assert m.oldest_pending_ms() == 200 and m.as_dict()["in_flight"] == 1
    m.note_done(1)
    assert m.oldest_pending_ms() is None and m.as_dict()["in_flight"] == 0


def test_reset_forgets_what_is_in_flight() -> None:
    m = UnitMetrics(on=True)
    m.note_offered(_Batch(1, 2))  # type: ignore[arg-type]
    m.reset_in_flight()
    assert m.oldest_pending_ms() is None and m.as_dict()["in_flight"] == 0


def test_off_keeps_nothing() -> None:
    m = UnitMetrics(on=False)
    m.note_offered(_Batch(1))  # type: ignore[arg-type]
    assert m.as_dict()["in_flight"] == 0
