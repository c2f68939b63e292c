"""How close a log-mode pipeline is to losing changes to the topics' retention.

A pipeline unit resumes from its checkpoint ``pipeline:<id>/log``; the broker deletes old
segments after ``retention.ms``. Once the oldest change the pipeline has not consumed is
older than that, it is gone and the pipeline stops with a ``log_gap`` error (invariant 5,
:mod:`tideflow.connectors.sources.kafka.gaps`). Before that, the metrics sampler stores
``log_retention_used`` per pipeline: the age of its oldest unconsumed message divided by the
topic's ``retention.ms`` (max over partitions; 0 when caught up). The health thresholds
(:mod:`tideflow.engine.alerts`) turn it into a warning at 0.8 and critical at 0.95 by default.

Checked at most once a minute per pipeline, on the worker that runs it, off the data path.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka import Consumer, TopicPartition, admin
from confluent_kafka.admin import AdminClient
from sqlalchemy import select

from tideflow.connectors.sources.kafka import position as positions
from tideflow.store.db import Store
from tideflow.store.models.runtime import Checkpoint

log = logging.getLogger(__name__)
ConfigResource: Any = getattr(admin, "ConfigResource")  # noqa: B009 (untyped, not re-exported)

EVERY_S = 60.0
CONFIG_TTL_S = 600.0
TIMEOUT_S = 5.0


class RetentionWatch:
    """``used(pipeline ids)``: the retention share each pipeline's backlog has reached."""

    def __init__(self, store: Store, bootstrap: str, every: float = EVERY_S) -> None:
        self.store = store
        self.bootstrap = bootstrap
        self.every = every
        self._last: dict[str, tuple[float, float]] = {}  # pipeline → (checked at, used)
        self._retention: dict[str, tuple[float, int]] = {}  # topic → (read at, retention ms)
        self._consumer: Consumer | None = None
        self._admin: AdminClient | None = None

    def used(self, pipeline_ids: list[str]) -> dict[str, float]:
        now = time.monotonic()
        due = [p for p in pipeline_ids if now - self._last.get(p, (-1e9, 0.0))[0] >= self.every]
        if due:
            for pid, offsets in self._positions(due).items():
                try:
                    self._last[pid] = (now, self._share(offsets))
                except Exception as exc:  # the broker may be away: keep the last figure
                    log.warning("log retention of pipeline %s not checked: %r", pid, exc)
        return {p: self._last[p][1] for p in pipeline_ids if p in self._last}

    def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.close()

    def _positions(self, pipeline_ids: list[str]) -> dict[str, dict[str, int]]:
        """Next offset per partition, merged over the pipeline's log checkpoints (shards)."""
        out: dict[str, dict[str, int]] = {}
        with self.store.session() as s:
            for pid in pipeline_ids:
                rows = s.execute(
                    select(Checkpoint.position).where(Checkpoint.unit.like(f"pipeline:{pid}/log%"))
                ).all()
                for (position,) in rows:
                    found = positions.offsets_of(position if isinstance(position, dict) else None)
                    out.setdefault(pid, {}).update(found)
        return out

    def _share(self, offsets: dict[str, int]) -> float:
        consumer = self._client()
        now_ms = time.time() * 1000
        worst = 0.0
        for key, offset in offsets.items():
            topic, _, partition = key.rpartition(":")
            tp = TopicPartition(topic, int(partition), offset)
            _, high = consumer.get_watermark_offsets(tp, timeout=TIMEOUT_S)
            if offset >= high:
                continue  # caught up
            retention = self._retention_ms(topic)
            if retention <= 0:
                continue  # kept forever
            stamp = self._timestamp(consumer, tp)
            if stamp is not None:
                worst = max(worst, (now_ms - stamp) / retention)
        return round(worst, 4)

    def _timestamp(self, consumer: Consumer, tp: TopicPartition) -> int | None:
        """Timestamp (ms) of the message at ``tp.offset``, or the first one after it."""
        consumer.assign([tp])
        try:
            deadline = time.monotonic() + TIMEOUT_S
            while time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is None or msg.error() is not None:
                    continue
                kind, stamp = msg.timestamp()
                return int(stamp) if kind and stamp > 0 else None
            return None
        finally:
            consumer.unassign()

    def _retention_ms(self, topic: str) -> int:
        cached = self._retention.get(topic)
        if cached is not None and time.monotonic() - cached[0] < CONFIG_TTL_S:
            return cached[1]
        client = self._admin = self._admin or AdminClient({"bootstrap.servers": self.bootstrap})
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
        entries: dict[str, Any] = client.describe_configs([resource])[resource].result(TIMEOUT_S)
        entry = entries.get("retention.ms")
        value = int(entry.value) if entry is not None and entry.value is not None else -1
        self._retention[topic] = (time.monotonic(), value)
        return value

    def _client(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(
                {
                    "bootstrap.servers": self.bootstrap,
                    # Never commits: reads one message per partition to date the backlog.
                    "group.id": "tideflow-retention-watch",
                    "enable.auto.commit": False,
                    "enable.partition.eof": False,
                }
            )
        return self._consumer
