"""Cutting the record stream of one source into bounded batches.

A batch closes when it holds ``max_events`` events or about ``max_bytes`` of values (so memory
is bounded by configuration, not by transaction size: invariant 6), when its first record is
``max_wait`` seconds old, or at a :class:`~tideflow.events.Commit` when the source has nothing
more immediately available (low latency at low rates, large batches at high rates).

``Batch.position`` is the last Commit position seen up to the end of the batch, carried over
from earlier batches: a batch ending mid-transaction keeps the previous commit, so a restart
replays the partial transaction (duplicates, never gaps: invariant 2). A run of heartbeat
Commits with no events becomes an empty batch that only moves the position (invariant 4);
those close on the time rule only, to keep checkpoint writes rare when tables are idle.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tideflow.events import Batch, ChangeEvent, Commit, Record, SnapshotChunk


@dataclass(frozen=True)
class Limits:
    max_events: int = 5000
    max_bytes: int = 8 * 1024 * 1024
    max_wait: float = 0.1


_EVENT_OVERHEAD = 200  # dicts, the event object, the position dict


def estimate_size(event: ChangeEvent) -> int:
    """Approximate memory held by an event's values (cheap, not exact)."""
    size = _EVENT_OVERHEAD
    for row in (event.before, event.after):
        if row is None:
            continue
        size += 64 * len(row)
        for value in row.values():
            if isinstance(value, str | bytes):
                size += len(value)
            elif isinstance(value, list):
                size += 32 * len(value)
    return size


class Batcher:
    """Accumulates records into batches; not thread-safe (owned by the source runner)."""

    # Measure one event in this many and use the estimate for the others: sizing every event
    # would cost about as much as decoding it. The estimate rises at once to a bigger sample
    # and decays slowly, so it errs on the side of smaller batches.
    SAMPLE_EVERY = 8

    def __init__(
        self,
        limits: Limits,
        position: dict[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.clock = clock
        self._position = position
        self._last_commit_ts: int | None = None
        self._batch = Batch(position=position)
        self._opened_at: float | None = None
        self._ends_at_commit = False
        self._seen = 0
        self._avg_size = float(_EVENT_OVERHEAD)
        self._emitted_position = position

    @property
    def open_batch(self) -> Batch:
        return self._batch

    def add(self, records: Sequence[Record], *, more_available: bool) -> list[Batch]:
        """Add one poll's records; return the batches that closed, in order."""
        closed: list[Batch] = []
        max_events, max_bytes = self.limits.max_events, self.limits.max_bytes
        batch = self._batch
        events = batch.events
        size = batch.bytes
        avg, seen = self._avg_size, self._seen
        # This loop runs for every record: locals, and no isinstance for the common case.
        for record in records:
            if self._opened_at is None:
                self._opened_at = self.clock()
            if record.__class__ is ChangeEvent or isinstance(record, ChangeEvent):
                events.append(record)
                seen += 1
                if seen % self.SAMPLE_EVERY == 1:
                    sample = estimate_size(record)
                    avg = max(sample, avg + (sample - avg) * 0.25)
                size += int(avg)
                self._ends_at_commit = False
                if len(events) >= max_events or size >= max_bytes:
                    batch.bytes = size
                    closed.append(self._close())
                    batch, events, size = self._batch, self._batch.events, 0
            elif isinstance(record, Commit):
                self._position = record.position
                self._last_commit_ts = record.commit_ts_ms
                batch.position = record.position
                batch.last_commit_ts_ms = record.commit_ts_ms
                self._ends_at_commit = True
            elif record.__class__ is SnapshotChunk:
                assert isinstance(record, SnapshotChunk)
                # A chunk is a batch of its own (bounded by the chunk size), after the events
                # before it and before those after it: order per key is kept (invariant 3).
                if events:
                    batch.bytes = size
                    closed.append(self._close())
                closed.append(
                    Batch(
                        [],
                        self._position,
                        self._last_commit_ts,
                        len(record.data),
                        chunk=record,
                    )
                )
                self._emitted_position = self._position
                batch, events, size = self._batch, self._batch.events, 0
            # Messages (snapshot watermarks) carry no row data for destinations.
        batch.bytes = size
        self._avg_size, self._seen = avg, seen
        if not more_available and self._ends_at_commit and batch.events:
            closed.append(self._close())
        expired = self.expired()
        if expired is not None:
            closed.append(expired)
        return closed

    def time_left(self) -> float | None:
        """Seconds until the open batch must close on the time rule (None: nothing open)."""
        if self._opened_at is None:
            return None
        return max(0.0, self._opened_at + self.limits.max_wait - self.clock())

    def expired(self) -> Batch | None:
        """Close and return the open batch if it is older than ``max_wait``."""
        left = self.time_left()
        if left is None or left > 0:
            return None
        if not self._batch.events and self._batch.position == self._emitted_position:
            # Nothing new: records were only Messages.
            self._reset()
            return None
        return self._close()

    def _close(self) -> Batch:
        batch = self._batch
        self._emitted_position = batch.position
        self._reset()
        return batch

    def _reset(self) -> None:
        self._batch = Batch(position=self._position, last_commit_ts_ms=self._last_commit_ts)
        self._opened_at = None
        self._ends_at_commit = False
