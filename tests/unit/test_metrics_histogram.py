"""Latency histogram, quantiles and per-interval percentiles (engine/metrics.py, observe.py)."""

from __future__ import annotations

from typing import Any

from tideflow.engine.metrics import LATENCY_BUCKETS_MS, Histogram, UnitMetrics, quantile
from tideflow.engine.observe import unit_points


def test_observe_weights_by_events_and_picks_the_bucket_by_upper_bound() -> None:
    h = Histogram()
    h.observe(5, 3)  # on a bound: that bucket (le semantics)
    h.observe(6, 1)
    h.observe(10**7, 2)  # beyond the last bound: +Inf
    assert h.counts[0] == 3 and h.counts[1] == 1 and h.counts[-1] == 2
    assert h.count == 6 and h.sum_ms == 5 * 3 + 6 + 2 * 10**7
    assert len(h.counts) == len(LATENCY_BUCKETS_MS) + 1


def test_quantiles() -> None:
    counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    assert quantile(counts, 0.5) is None
    counts[LATENCY_BUCKETS_MS.index(100)] = 90
    counts[LATENCY_BUCKETS_MS.index(5000)] = 9
    counts[-1] = 1
    assert quantile(counts, 0.5) == 100
    assert quantile(counts, 0.9) == 100
    assert quantile(counts, 0.95) == 5000
    assert quantile(counts, 0.99) == 5000
    assert quantile(counts, 1.0) == LATENCY_BUCKETS_MS[-1]  # +Inf reports the largest bound


def _pipeline(buckets: list[int], **extra: Any) -> dict[str, dict[str, Any]]:
    m = UnitMetrics(on=True).as_dict()
    m.update(latency_buckets=buckets, **extra)
    return {"pipeline:p": m}


def test_percentiles_cover_only_the_interval() -> None:
    n = len(LATENCY_BUCKETS_MS) + 1
    first = [0] * n
    first[LATENCY_BUCKETS_MS.index(5000)] = 10
    previous: dict[str, list[int]] = {}
    v = unit_points(_pipeline(first), {}, {}, previous, 0)["pipeline:p"]
    assert v["latency_p50_ms"] == 5000 and v["latency_count"] == 10
    second = list(first)
    second[LATENCY_BUCKETS_MS.index(25)] = 4  # the next interval only saw fast batches
    v = unit_points(_pipeline(second), {}, {}, previous, 1000)["pipeline:p"]
    assert v["latency_p50_ms"] == v["latency_p99_ms"] == 25
    v = unit_points(_pipeline(second), {}, {}, previous, 2000)["pipeline:p"]
    assert "latency_p50_ms" not in v  # nothing observed in this interval
    restarted = [0] * n
    restarted[1] = 1
    v = unit_points(_pipeline(restarted), {}, {}, previous, 3000)["pipeline:p"]
    assert v["latency_p50_ms"] == 10  # totals fell (restart): the new totals are the interval


def test_latency_is_the_age_of_the_oldest_event_in_flight() -> None:
    v = unit_points(_pipeline([0] * 16, in_flight=7, oldest_pending_ms=1_000), {}, {}, {}, 9_000)
    assert v["pipeline:p"]["latency_ms"] == 8_000 and v["pipeline:p"]["records_lag"] == 7
    v = unit_points(_pipeline([0] * 16, latency_ms=40), {}, {}, {}, 9_000)
    assert v["pipeline:p"]["latency_ms"] == 40 and v["pipeline:p"]["records_lag"] == 0
