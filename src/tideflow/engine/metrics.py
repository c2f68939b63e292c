"""In-process counters per unit: a thin layer the observability work builds on.

Counters are updated by the one thread that runs a unit and read by anyone through
:meth:`Metrics.snapshot`; plain attribute updates are enough under the GIL.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tideflow.events import Batch, Op


@dataclass
class UnitMetrics:
    events: Counter[str] = field(default_factory=Counter)  # by op code
    batches: int = 0
    last_event_ms: int | None = None  # source commit time of the newest event handled
    latency_ms: int | None = None  # source commit → durable, for the newest batch
    retries: int = 0
    dead_letters: int = 0
    transform_errors: int = 0  # records a transform threw on or that exceeded its limits

    def record_batch(self, batch: Batch, *, durable_at_ms: int | None = None) -> None:
        self.batches += 1
        self.count_events(batch.events)
        if batch.events:
            self.last_event_ms = batch.events[-1].commit_ts_ms
        if durable_at_ms is not None and batch.last_commit_ts_ms is not None:
            self.latency_ms = max(0, durable_at_ms - batch.last_commit_ts_ms)

    def count_events(self, events: Sequence[Any]) -> None:
        """Add ``events`` (ChangeEvents) to the per-op counters."""
        if not events:
            return
        # list.count compares identities first (C speed); hashing Op members is Python code.
        ops = [e.op for e in events]
        for op in Op:
            n = ops.count(op)
            if n:
                self.events[op.value] += n

    def as_dict(self) -> dict[str, Any]:
        return {
            "events": dict(self.events),
            "events_total": sum(self.events.values()),
            "batches": self.batches,
            "last_event_ms": self.last_event_ms,
            "latency_ms": self.latency_ms,
            "retries": self.retries,
            "dead_letters": self.dead_letters,
            "transform_errors": self.transform_errors,
        }


class Metrics:
    """The counters of every unit this worker runs, keyed by unit name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._units: dict[str, UnitMetrics] = {}

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
