"""Snapshot chunks rendered for Kafka straight from COPY text (kafka/chunks.py) give byte for
byte the keys and envelopes of the chunk's events (the path every other row takes), for every
mapped type, NULLs, escapes and the values the fast paths must refuse; and a chunk written by
the Kafka destination lands as exactly those messages."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import orjson
import psycopg
import pytest

from tests.support import api, kafka, pg, workload
from tideflow.connectors.destinations.kafka import chunks
from tideflow.connectors.destinations.kafka.config import KafkaDestinationConfig
from tideflow.connectors.destinations.kafka.destination import KafkaDestination
from tideflow.connectors.destinations.kafka.serializer import Serializer
from tideflow.connectors.sources.postgres.config import PostgresSourceConfig
from tideflow.connectors.sources.postgres.snapshot import PostgresChunkReader
from tideflow.envelope import SourceInfo
from tideflow.errors import TransientError
from tideflow.events import Batch, SnapshotChunk

# Values each fast path must send through the event path (or render the same way).
_EDGES = [
    # id, n (numeric), t (text), tstz, vc
    (1001, "0.0000001", 'quote " and back\\slash', "2024-01-01 00:00:00.5+00", None),
    (1002, "0", "tab\there\nnewline\x01ctl", "2024-01-01 00:00:00.123456+00", "ünï ✓ %s %%"),
    (1003, "-0.0000000", "", "0999-01-01 00:00:00+00", ""),
    (1004, "NaN", None, "infinity", "100%"),
    (1005, "123456789012345678.1234567890", "\\N", None, "a\u2028b"),
    (1006, "-0.000001", "plain", "2024-06-30 23:59:59+00", "x"),
]


@pytest.fixture(scope="module")
def source_db() -> Iterator[str]:
    with pg.temp_database("src") as src:
        workload.create_schema(src)
        workload.insert_range(src, 1, 300)
        with psycopg.connect(pg.dsn(src), autocommit=True) as conn:
            for row in _EDGES:
                conn.execute(
                    "INSERT INTO public.items (id, n, t, tstz, vc) VALUES (%s, %s, %s, %s, %s)",
                    row,
                )
        yield src


def _chunk(src: str, binary_mode: str, where: str | None = None) -> SnapshotChunk:
    config = PostgresSourceConfig.model_validate(
        {**api.pg_source_config(src, "public.items"), "binary.handling.mode": binary_mode}
    )
    reader = PostgresChunkReader(config)
    try:
        plan = reader.plan("public.items", None)
        chunk = reader.read_chunk(plan, None, None, where).chunk
    finally:
        reader.close()
    assert chunk is not None
    return dataclasses.replace(chunk, commit_ts_ms=1_700_000_000_123)


@pytest.mark.parametrize("schemas", [False, True], ids=["plain", "schemas"])
@pytest.mark.parametrize("binary_mode", ["bytes", "base64", "hex"])
@pytest.mark.parametrize("source", [True, False], ids=["source-info", "inferred"])
@pytest.mark.parametrize(
    "where",
    [None, "id > 1000", "id <= 300", "id IN (1001, 1002, 1006)"],
    ids=["all", "edges-only", "regular-only", "times-with-fractions"],
)
def test_chunk_renders_as_its_events(
    source_db: str, schemas: bool, binary_mode: str, source: bool, where: str | None
) -> None:
    chunk = _chunk(source_db, binary_mode, where)
    info = SourceInfo("postgresql", "srv%", "db") if source else None
    serializer = Serializer(schemas=schemas, name="pipe", source=info)
    topic = "srv.public.items"
    events = chunk.events()
    rendered = chunks.render(serializer, chunk, topic, 1_700_000_000_456)
    assert rendered is not None
    keys, values = rendered
    assert keys == [serializer.key(e, topic) for e in events]
    assert values == [serializer.value(e, topic, 1_700_000_000_456) for e in events]


def test_keyless_and_composite_keys_render_as_their_events() -> None:
    with pg.temp_database("src") as src:
        with psycopg.connect(pg.dsn(src), autocommit=True) as conn:
            conn.execute("CREATE TABLE public.pair (a text, b int, v numeric, PRIMARY KEY (a, b))")
            conn.execute("CREATE TABLE public.bare (a text, v numeric)")
            conn.execute(
                "INSERT INTO public.pair SELECT 'k\"' || g, g, g / 7.0"
                " FROM generate_series(1, 50) g"
            )
            conn.execute("INSERT INTO public.bare SELECT 'k' || g, g FROM generate_series(1, 50) g")
        config = PostgresSourceConfig.model_validate(
            api.pg_source_config(src, "public.pair,public.bare")
        )
        reader = PostgresChunkReader(config)
        try:
            pair = reader.read_chunk(reader.plan("public.pair", None), None, None, None).chunk
            bare_plan = reader.plan("public.bare", "a")  # a surrogate key: no message key
            bare = reader.read_chunk(bare_plan, None, None, None).chunk
        finally:
            reader.close()
    serializer = Serializer(schemas=False, name="pipe", source=SourceInfo("postgresql", "s"))
    for chunk in (pair, bare):
        assert chunk is not None
        events = chunk.events()
        rendered = chunks.render(serializer, chunk, "t", 5)
        assert rendered is not None
        assert rendered[0] == [serializer.key(e, "t") for e in events]
        assert rendered[1] == [serializer.value(e, "t", 5) for e in events]
    assert bare is not None and chunks.render(serializer, bare, "t", 5) is not None
    assert all(k is None for k in chunks.render(serializer, bare, "t", 5)[0])  # type: ignore[index]


def test_destination_writes_a_chunk_as_its_events(source_db: str) -> None:
    """Through a real broker: the chunk's messages, in order, with the event path's keys and
    values (ts_ms aside, which is the write time)."""
    prefix = kafka.unique("tfchunk") + "."
    chunk = _chunk(source_db, "bytes")
    config = KafkaDestinationConfig.model_validate(kafka.dest_config(**{"topic.prefix": prefix}))
    info = SourceInfo("postgresql", "srv", "db")
    dest = KafkaDestination(config, name="chunks", source=info)
    topic = f"{prefix}public.items"
    try:
        dest.open()
        dest.write(Batch([], None, None, len(chunk.data), chunk=chunk))
        messages = kafka.read_topic(topic, count=chunk.rows, settle=1.0)
        serializer = Serializer(schemas=config.json_schema_enable, name="chunks", source=info)
        events = chunk.events()
        assert [k for k, _ in messages] == [serializer.key(e, topic) for e in events]
        assert [_without_ts(v) for _, v in messages] == [
            _without_ts(serializer.value(e, topic, 0)) for e in events
        ]
    finally:
        dest.close()
        kafka.delete_topics_with_prefix(prefix)


def _without_ts(value: bytes | None) -> dict[str, Any]:
    assert value is not None
    doc = orjson.loads(value)
    doc.pop("ts_ms")  # the processing time
    return doc  # type: ignore[no-any-return]


def test_chunk_write_returns_only_once_acknowledged(source_db: str) -> None:
    """invariant 1: with the broker cut, writing a chunk raises (the runtime then neither
    checkpoints nor records snapshot progress); once it is back, the same chunk is written."""
    proxy = kafka.BrokerProxy().start()
    prefix = kafka.unique("tfchunkcut") + "."
    topic = f"{prefix}public.items"
    chunk = _chunk(source_db, "bytes", "id <= 300")
    config = KafkaDestinationConfig.model_validate(
        kafka.dest_config(
            **{
                "kafka.sink.bootstrap": f"127.0.0.1:{proxy.port}",
                "topic.prefix": prefix,
                "delivery.timeout.ms": 3000,
            }
        )
    )
    dest = KafkaDestination(config, name="chunkcut", source=SourceInfo("postgresql", "srv"))
    try:
        dest.open()
        dest.write(Batch([], None, None, 0, chunk=chunk))  # creates the topic
        proxy.cut()
        with pytest.raises(TransientError):
            dest.write(Batch([], None, None, 0, chunk=chunk))
        proxy.restore()
        dest.write(Batch([], None, None, 0, chunk=chunk))
        messages = kafka.read_topic(topic, count=3 * chunk.rows, timeout=60, settle=1.0)
        # The cut write may have reached the broker in part (duplicates, never gaps).
        assert chunk.rows * 2 <= len(messages) <= chunk.rows * 3
        assert [k for k, _ in messages[-chunk.rows :]] == [k for k, _ in messages[: chunk.rows]]
    finally:
        dest.close()
        proxy.stop()
        kafka.delete_topics_with_prefix(prefix)
