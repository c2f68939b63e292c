"""Windows over stored points: increases, summaries, rates, zero points, retention pruning."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from tideflow.control.resources.metrics import service
from tideflow.engine.observe import COARSE, FINE, first_counters, prune
from tideflow.errors import TideflowError
from tideflow.store.db import Store
from tideflow.store.models.metrics import MetricPoint


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path}/meta.db")
    s.migrate()
    return s


class _Ctx:
    def __init__(self, store: Store) -> None:
        self.store = store


def _put(store: Store, unit: str, metric: str, points: list[tuple[int, float]], res: int) -> None:
    with store.session() as s:
        s.execute(
            insert(MetricPoint),
            [
                {"unit": unit, "metric": metric, "resolution": res, "ts": t, "value": v}
                for t, v in points
            ],
        )


def test_increase_counts_restarts_as_new_totals() -> None:
    assert service.increase([]) == 0
    assert service.increase([(0, 5.0)]) == 0
    assert service.increase([(0, 0.0), (10, 5.0), (20, 12.0)]) == 12
    assert service.increase([(0, 10.0), (10, 15.0), (20, 3.0), (30, 4.0)]) == 5 + 3 + 1


def test_summaries_by_kind() -> None:
    pts = [(0, 1.0), (10, 9.0), (20, 4.0)]
    assert service.summarise("events_c", pts) == 8 + 4
    assert service.summarise("retained_wal_bytes", pts) == 9
    assert service.summarise("latency_p99_ms", pts) == 9
    assert service.summarise("behind_ms", pts) == 4
    assert service.summarise("behind_ms", []) is None


def test_window_of() -> None:
    start, end = service.window_of(10, "minute", None, None)
    assert end - start == 600 and abs(end - time.time()) < 5
    assert service.window_of(None, None, "100", "160") == (100, 160)
    start, end = service.window_of(None, None, "1970-01-01T00:01:40Z", "200")
    assert (start, end) == (100, 200)
    with pytest.raises(TideflowError):
        service.window_of(None, None, "300", "200")
    with pytest.raises(TideflowError):
        service.window_of(1, "week", None, None)


def test_rates_are_increases_over_the_span_of_the_points(store: Store) -> None:
    now = int(time.time())
    unit = "source:s"
    _put(store, unit, "events_c", [(now - 40, 0), (now - 30, 100), (now - 10, 400)], FINE)
    _put(store, unit, "events_d", [(now - 40, 0), (now - 10, 20)], FINE)
    _put(store, unit, "bytes", [(now - 40, 0), (now - 10, 3000)], FINE)
    _put(store, unit, "errors", [(now - 40, 0), (now - 10, 1)], FINE)
    _put(store, unit, "events_c", [(now - 4000, 7)], FINE)  # outside the window
    got = service.window_rates(_Ctx(store), unit, 60)  # type: ignore[arg-type]
    assert got["measured"] and got["span"] == 30 and got["events"] == 420
    assert got["events_per_second"] == 14 and got["bytes_per_second"] == 100
    assert got["error_rate_per_minute"] == 2
    empty = service.window_rates(_Ctx(store), "source:none", 60)  # type: ignore[arg-type]
    assert not empty["measured"] and empty["events_per_second"] == 0


def test_zero_points_once_per_new_counter() -> None:
    seen: set[tuple[str, str]] = set()
    # A source's unit may show up with its slot figures before its first counters.
    assert first_counters({"source:a": {"retained_wal_bytes": 5.0}}, seen) == {}
    got = first_counters({"source:a": {"retained_wal_bytes": 5.0, "events_c": 9.0}}, seen)
    assert got == {"source:a": {"events_c": 0.0}}
    assert first_counters({"source:a": {"events_c": 12.0}}, seen) == {}


def test_pruning_keeps_each_resolution_for_its_retention(store: Store) -> None:
    now = 10_000_000
    day, month = 24 * 3600, 30 * 24 * 3600
    _put(store, "pipeline:p", "records_lag", [(now - day - 1, 1), (now - day, 2), (now, 3)], FINE)
    _put(store, "pipeline:p", "records_lag", [(now - month - 60, 1), (now - day - 1, 2)], COARSE)
    with store.session() as s:
        prune(s, now)
    with store.session() as s:
        rows: list[Any] = list(s.execute(select(MetricPoint.resolution, MetricPoint.ts)).all())
    assert sorted((int(r), int(t)) for r, t in rows) == [
        (FINE, now - day),
        (FINE, now),
        (COARSE, now - day - 1),
    ]
