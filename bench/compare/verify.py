"""What arrived at the sink: consume a Kafka topic and rebuild the table it describes.

A contender's figure counts only when the rebuilt table equals the source table (same keys,
same normalised values) and every expected change event is there (duplicates are counted and
reported; at-least-once delivery is not a loss). Both Tideflow and Debezium write the Debezium
envelope as JSON; decimals arrive as strings and timestamps as ISO 8601 text, which is what the
normalisation here accepts.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from bench.run import KAFKA

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
NAIVE_EPOCH = dt.datetime(1970, 1, 1)


def normalise(value: Any, kind: str) -> Any:
    if value is None:
        return None
    if kind == "int":
        return int(value)
    if kind == "dec":
        return Decimal(str(value))
    if kind == "ts":
        if isinstance(value, dt.datetime):
            return value
        if isinstance(value, int):  # epoch microseconds (adaptive time precision)
            return EPOCH + dt.timedelta(microseconds=value)
        return dt.datetime.fromisoformat(str(value))
    if kind == "dt":  # a wall-clock time without zone (MySQL DATETIME)
        if isinstance(value, int):  # epoch microseconds of the wall clock read as UTC
            return NAIVE_EPOCH + dt.timedelta(microseconds=value)
        naive = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
        if naive.tzinfo is not None:
            naive = naive.astimezone(dt.UTC).replace(tzinfo=None)
        return naive
    return str(value)


def row_hash(values: Any, kinds: list[str] | None = None) -> int:
    """Hash of a row's non-key values; equal for equal values whatever their encoding."""
    if kinds is None:
        return hash(tuple(values))
    return hash(tuple(normalise(v, k) for v, k in zip(values, kinds, strict=True)))


def state_checksum(state: dict[int, int]) -> str:
    """Order-independent digest of {key: row hash}, for the report."""
    total = 0
    for k, v in state.items():
        total = (total + hash((k, v))) & 0xFFFFFFFFFFFFFFFF
    return f"{len(state)}:{total:016x}"


@dataclass
class Delivery:
    """A consumed topic: its messages, the rebuilt table and the broker timestamps."""

    messages: int = 0
    tombstones: int = 0
    ops: Counter[str] = field(default_factory=Counter)
    state: dict[int, int] = field(default_factory=dict)
    first_ts_ms: int = 0
    last_ts_ms: int = 0
    latencies_ms: list[float] = field(default_factory=list)


def create_topic(name: str) -> None:
    """One partition, broker-side timestamps: a message's timestamp is when it became visible
    at the sink, for every contender alike."""
    admin = AdminClient({"bootstrap.servers": KAFKA})
    futures = admin.create_topics(
        [NewTopic(name, 1, 1, config={"message.timestamp.type": "LogAppendTime"})]
    )
    futures[name].result(30)


def delete_topic(name: str) -> None:
    admin = AdminClient({"bootstrap.servers": KAFKA})
    for f in admin.delete_topics([name]).values():
        with contextlib.suppress(Exception):  # a topic that never got created is fine
            f.result(30)


def end_offset(topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": KAFKA, "group.id": "cmp-watermarks"})
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        return int(high)
    except KafkaException:  # metadata of a just-created topic not propagated yet
        return 0
    finally:
        consumer.close()


def consume(
    topic: str,
    columns: list[tuple[str, str]],
    *,
    latency_column: str | None = None,
    latency_after: int = 0,
) -> Delivery:
    """Read ``topic`` from the beginning to its current end and rebuild the table. With
    ``latency_column``, inserts of keys above ``latency_after`` also give a latency: broker
    timestamp minus that column."""
    kinds = [k for _, k in columns[1:]]
    names = [c for c, _ in columns[1:]]
    key_name = columns[0][0]
    end = end_offset(topic)
    out = Delivery()
    consumer = Consumer(
        {
            "bootstrap.servers": KAFKA,
            "group.id": f"cmp-verify-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 * 2**20,
        }
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    deadline = time.monotonic() + 600
    try:
        position = 0
        while position < end:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: read {position} of {end} messages")
            for msg in consumer.consume(10_000, timeout=1.0):
                if msg.error():
                    raise RuntimeError(f"{topic}: {msg.error()}")
                position = (msg.offset() or 0) + 1
                out.messages += 1
                ts = msg.timestamp()[1]
                if out.first_ts_ms == 0:
                    out.first_ts_ms = ts
                out.last_ts_ms = max(out.last_ts_ms, ts)
                value = msg.value()
                if value is None:
                    out.tombstones += 1
                    continue
                env = orjson.loads(value)
                if "payload" in env and "op" not in env:
                    env = env["payload"]
                op = env["op"]
                out.ops[op] += 1
                if op == "d":
                    out.state.pop(int(env["before"][key_name]), None)
                    continue
                after = env["after"]
                key = int(after[key_name])
                out.state[key] = row_hash([after[n] for n in names], kinds)
                if latency_column is not None and op == "c" and key > latency_after:
                    created = normalise(after[latency_column], "ts")
                    out.latencies_ms.append(ts - (created - EPOCH) / dt.timedelta(milliseconds=1))
    finally:
        consumer.close()
    return out


@dataclass
class Verdict:
    ok: bool
    detail: str
    checksum_source: str
    checksum_sink: str
    duplicates: int


def check(delivery: Delivery, source: dict[int, int], expected: dict[str, int]) -> Verdict:
    """Compare the rebuilt table with the source and the event counts with the workload."""
    problems: list[str] = []
    got = {
        "c": delivery.ops["c"] + delivery.ops["r"],
        "u": delivery.ops["u"],
        "d": delivery.ops["d"],
    }
    for op, want in expected.items():
        if got.get(op, 0) < want:
            problems.append(f"{op}: {got.get(op, 0)} of {want} events")
    if delivery.state != source:
        missing = len(source.keys() - delivery.state.keys())
        extra = len(delivery.state.keys() - source.keys())
        differ = sum(
            1 for k in source.keys() & delivery.state.keys() if source[k] != delivery.state[k]
        )
        problems.append(f"table differs: {missing} rows missing, {extra} extra, {differ} differ")
    events = sum(got.values())
    return Verdict(
        ok=not problems,
        detail="; ".join(problems) or "all changes delivered, table identical",
        checksum_source=state_checksum(source),
        checksum_sink=state_checksum(delivery.state),
        duplicates=max(0, events - sum(expected.values())),
    )
