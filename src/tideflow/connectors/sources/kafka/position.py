"""Positions of the ``kafkadirect`` source.

``{"consumed": n, "offsets": {"<topic>:<partition>": next_offset, ...}}``: the next offset to
read of every partition seen so far. ``consumed`` is the sum of the offsets; it only grows
while the offsets move forward, and comes first in key order so the runtime's generic
ordering of positions (values in sorted key order) compares positions by it (invariant 2).
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import TopicPartition


def make(offsets: dict[str, int]) -> dict[str, Any]:
    return {"consumed": sum(offsets.values()), "offsets": dict(sorted(offsets.items()))}


def offsets_of(position: dict[str, Any] | None) -> dict[str, int]:
    if not position:
        return {}
    return {str(k): int(v) for k, v in dict(position.get("offsets") or {}).items()}


def partition_key(topic: str, partition: int) -> str:
    # Kafka topic names cannot contain ':', so the split back is unambiguous.
    return f"{topic}:{partition}"


def partition_of(key: str) -> int:
    return int(key.rpartition(":")[2])


def topic_partitions(position: dict[str, Any]) -> list[TopicPartition]:
    out = []
    for key, offset in offsets_of(position).items():
        topic, _, partition = key.rpartition(":")
        out.append(TopicPartition(topic, int(partition), offset))
    return out
