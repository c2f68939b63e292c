"""Replay a pipeline from its source's log (log mode, ``docs/cluster.md``).

A pipeline in log mode resumes from its checkpoint ``pipeline:<id>/log`` (Kafka offsets per
partition), which wins over its consumer group's offsets. Rewinding sets that checkpoint to the
offsets of a point in time (or the start of the topics); the pipeline then re-reads and
re-writes every change from there. It is an operator's decision to move a checkpoint back, so
this is the one place that writes an older position (invariant 2 protects against mistakes,
not against this): the pipeline must be paused or stopped first, so no worker runs it.

A sharded pipeline (``cluster.shards`` N > 1, :mod:`.shards`) keeps one checkpoint per shard,
``pipeline:<id>/log#<k>/<N>``, holding the offsets of the partitions ``p mod N == k``: each is
set to its own partitions' offsets, so every shard replays from the same point in time.

``python -m tideflow.engine.cluster.replay PIPELINE_ID [--to ISO-8601 time]`` (default: from
the start of the log), with ``TIDEFLOW_DATABASE_URL`` and ``TIDEFLOW_LOG_BOOTSTRAP`` set.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from confluent_kafka import TopicPartition, admin
from confluent_kafka.admin import AdminClient
from sqlalchemy import delete

from tideflow.connectors.sources.kafka import position as kafka_positions
from tideflow.engine.checkpoints import encode
from tideflow.engine.cluster import shards
from tideflow.engine.cluster.logmode import topic_prefix
from tideflow.engine.plan import ACTIVE
from tideflow.engine.positions import Position
from tideflow.errors import TerminalError
from tideflow.store.db import Store
from tideflow.store.models.resources import Destination, Pipeline
from tideflow.store.models.runtime import Checkpoint, UnitStatus

OffsetSpec: Any = getattr(admin, "OffsetSpec")  # noqa: B009 (untyped, not re-exported)


def offsets_at(bootstrap: str, source_id: str, at: datetime | None) -> dict[str, int]:
    """Per partition of the source's topics: the first offset at or after ``at`` (None: the
    earliest offset the topics still hold)."""
    client = AdminClient({"bootstrap.servers": bootstrap})
    prefix = topic_prefix(source_id)
    topics = client.list_topics(timeout=30).topics
    spec = (
        OffsetSpec.earliest()
        if at is None
        else OffsetSpec.for_timestamp(int(at.timestamp() * 1000))
    )
    wanted = {
        TopicPartition(name, p): spec
        for name, meta in topics.items()
        if name.startswith(prefix)
        for p in meta.partitions
    }
    if not wanted:
        return {}
    out: dict[str, int] = {}
    latest = {tp: OffsetSpec.latest() for tp in wanted}
    ends = {tp: f.result().offset for tp, f in client.list_offsets(latest).items()}
    for tp, future in client.list_offsets(wanted).items():
        offset = future.result().offset
        # No message at or after ``at`` in this partition: start after its last one.
        out[kafka_positions.partition_key(tp.topic, tp.partition)] = (
            offset if offset >= 0 else ends[tp]
        )
    return out


def rewind(store: Store, bootstrap: str, pipeline_id: str, at: datetime | None = None) -> Position:
    """Set the pipeline's log checkpoint to the offsets of ``at``; returns the new position."""
    with store.session() as s:
        row = s.get(Pipeline, pipeline_id)
        if row is None:
            raise TerminalError(f"no pipeline {pipeline_id}", code="not_found")
        if row.desired_state == ACTIVE:
            raise TerminalError(
                f"pipeline {row.name} is active: pause or stop it before a replay",
                code="pipeline_active",
            )
        source_id = row.source_id
        destination = s.get(Destination, row.destination_id)
        code = destination.connector if destination is not None else ""
        count, _ = shards.parse(code, row.destination_body)
        shown = s.get(UnitStatus, f"pipeline:{pipeline_id}")
        if shown is not None and shown.status == ACTIVE:
            raise TerminalError(
                f"pipeline {row.name} still runs on worker {shown.worker}; wait until it shows "
                "Paused or Stopped",
                code="pipeline_active",
            )
    offsets = offsets_at(bootstrap, source_id, at)
    for unit, owned in _checkpoints(f"pipeline:{pipeline_id}/log", offsets, count).items():
        _set(store, unit, kafka_positions.make(owned))
    return kafka_positions.make(offsets)


def _checkpoints(unit: str, offsets: dict[str, int], count: int) -> dict[str, dict[str, int]]:
    """The checkpoint units of a pipeline with ``count`` shards and the offsets each holds."""
    if count <= 1:
        return {unit: offsets}
    return {
        shards.checkpoint_unit(unit, k, count): {
            key: offset
            for key, offset in offsets.items()
            if shards.owns(kafka_positions.partition_of(key), k, count)
        }
        for k in range(count)
    }


def _set(store: Store, unit: str, position: Position) -> None:
    """Replace ``unit``'s checkpoint, keeping its fencing generation."""
    doc = encode(position)
    with store.session() as s:
        old = s.get(Checkpoint, unit)
        generation = old.generation if old is not None else 0
        s.execute(delete(Checkpoint).where(Checkpoint.unit == unit))
        s.add(
            Checkpoint(
                unit=unit, version=doc["version"], position=doc["position"], generation=generation
            )
        )


def main() -> None:
    import os

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline_id")
    parser.add_argument("--to", help="ISO-8601 time to replay from (default: the log's start)")
    args = parser.parse_args()
    store = Store(os.environ["TIDEFLOW_DATABASE_URL"])
    bootstrap = os.environ.get("TIDEFLOW_LOG_BOOTSTRAP", "127.0.0.1:9092")
    at = datetime.fromisoformat(args.to) if args.to else None
    position = rewind(store, bootstrap, args.pipeline_id, at)
    print(f"pipeline {args.pipeline_id} will replay from {position['offsets']}")


if __name__ == "__main__":
    main()
