"""In-process counters per unit, updated once per batch (never per row on the hot path).

Counters are updated by the one thread that runs a unit and read by anyone through
:meth:`Metrics.snapshot`; plain attribute updates are enough under the GIL. The sampler
(:mod:`.observe`) turns snapshots into stored time series every few seconds.

``TIDEFLOW_METRICS=off`` switches the per-batch bookkeeping off (overhead measurements); the
units still exist and report zeros.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tideflow.events import Batch, Op

# Upper bounds (milliseconds) of the latency histogram buckets; the last bucket is +Inf.
LATENCY_BUCKETS_MS: tuple[int, ...] = (
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 900000,
)  # fmt: skip


def enabled() -> bool:
    return os.environ.get("TIDEFLOW_METRICS", "on").strip().lower() not in ("off", "0", "false")


class Histogram:
    """Fixed buckets; one observation per batch, weighted by its event count."""

    __slots__ = ("count", "counts", "sum_ms")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        self.sum_ms = 0.0
        self.count = 0

    def observe(self, value_ms: float, weight: int = 1) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS_MS, value_ms)] += weight
        self.sum_ms += value_ms * weight
        self.count += weight


def quantile(counts: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile (ms) of bucket ``counts``: the upper bound of the bucket that holds it
    (the largest finite bound for the +Inf bucket). None when empty."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(counts):
        seen += n
        if n and seen >= rank:
            return float(LATENCY_BUCKETS_MS[min(i, len(LATENCY_BUCKETS_MS) - 1)])
    return float(LATENCY_BUCKETS_MS[-1])


@dataclass
class UnitMetrics:
    events: Counter[str] = field(default_factory=Counter)  # by op code
    tables: Counter[tuple[str, str]] = field(default_factory=Counter)  # (table, op)
    batches: int = 0
    bytes: int = 0
    last_event_ms: int | None = None  # source commit time of the newest event handled
    last_seen_ms: int | None = None  # wall time at which that event was handled
    behind_ms: int | None = None  # handled minus commit time, for the newest event
    latency_ms: int | None = None  # source commit → durable, for the newest batch
    latency: Histogram = field(default_factory=Histogram)
    retries: int = 0
    errors: int = 0
    dead_letters: int = 0
    transform_errors: int = 0  # records a transform threw on or that exceeded its limits
    connected: bool = False
    # Pipelines: events handed over by the source vs. events durable (records lag), and the
    # commit time of the oldest batch not durable yet (latency while a destination is stuck).
    offered: int = 0
    durable: int = 0
    _pending: deque[tuple[int, int]] = field(default_factory=deque)
    on: bool = field(default_factory=enabled)

    def record_batch(self, batch: Batch, *, durable_at_ms: int | None = None) -> None:
        self.batches += 1
        if not self.on:
            return
        events = batch.events
        self.count_events(events)
        self.bytes += batch.bytes
        if events:
            self.last_event_ms = events[-1].commit_ts_ms
            self.last_seen_ms = durable_at_ms or now_ms()
        if durable_at_ms is not None and batch.last_commit_ts_ms is not None:
            self.latency_ms = max(0, durable_at_ms - batch.last_commit_ts_ms)
            if events:
                # Per batch: the first event waited longest; weight the batch by its events.
                first = events[0].commit_ts_ms
                self.latency.observe(max(0, durable_at_ms - first), len(events))

    def count_events(self, events: Sequence[Any]) -> None:
        """Add ``events`` (ChangeEvents) to the per-op and per-(table, op) counters."""
        if not events or not self.on:
            return
        # list.count compares identities first (C speed); hashing Op members is Python code.
        ops = [e.op for e in events]
        for op in Op:
            n = ops.count(op)
            if n:
                self.events[op.value] += n
        first = events[0].table
        if all(e.table is first for e in events):
            name = first.name
            for op in Op:
                n = ops.count(op)
                if n:
                    self.tables[(name, op.value)] += n
        else:
            names = [e.table.name for e in events]
            self.tables.update(zip(names, [o.value for o in ops], strict=True))

    def note_read(self, events: Sequence[Any], nbytes: int) -> None:
        """Source side: a poll's change events (count, bytes, how far behind the source)."""
        if not self.on:
            return
        self.count_events(events)
        self.bytes += nbytes
        if events:
            seen = now_ms()
            last = events[-1].commit_ts_ms
            self.last_event_ms = last
            self.last_seen_ms = seen
            self.behind_ms = max(0, seen - last)

    def note_offered(self, batch: Batch) -> None:
        """Pipeline side, called by the source thread when a batch is queued."""
        n = len(batch.events)
        if not n or not self.on:
            return
        self.offered += n
        self._pending.append((self.offered, batch.events[0].commit_ts_ms))

    def note_done(self, n: int) -> None:
        """Pipeline side: ``n`` offered events are durable (or filtered out)."""
        if not n or not self.on:
            return
        self.durable += n
        pending = self._pending
        while pending and pending[0][0] <= self.durable:
            pending.popleft()

    def reset_in_flight(self) -> None:
        self._pending.clear()
        self.durable = self.offered

    def oldest_pending_ms(self) -> int | None:
        try:
            return self._pending[0][1] if self.offered > self.durable else None
        except IndexError:
            return None

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": dict(self.events),
            "events_total": sum(self.events.values()),
            "tables": {f"{t}|{op}": n for (t, op), n in list(self.tables.items())},
            "batches": self.batches,
            "bytes": self.bytes,
            "last_event_ms": self.last_event_ms,
            "last_seen_ms": self.last_seen_ms,
            "behind_ms": self.behind_ms,
            "latency_ms": self.latency_ms,
            "latency_buckets": list(self.latency.counts),
            "latency_sum_ms": self.latency.sum_ms,
            "retries": self.retries,
            "errors": self.errors,
            "dead_letters": self.dead_letters,
            "transform_errors": self.transform_errors,
            "connected": self.connected,
            "in_flight": max(0, self.offered - self.durable),
            "oldest_pending_ms": self.oldest_pending_ms(),
        }


class Metrics:
    """The counters of every unit this worker runs, keyed by unit name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._units: dict[str, UnitMetrics] = {}
        self.owners: dict[str, str] = {}  # pipeline unit → destination id (for aggregation)

    def unit(self, name: str) -> UnitMetrics:
        with self._lock:
            m = self._units.get(name)
            if m is None:
                m = self._units[name] = UnitMetrics()
            return m

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            units = dict(self._units)
        return {name: m.as_dict() for name, m in units.items()}


def now_ms() -> int:
    return int(time.time() * 1000)
