"""kafkadirect source against the real broker: envelopes back into change events, acks."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from tests.support import kafka
from tideflow.connectors.destinations.kafka.config import KafkaDestinationConfig
from tideflow.connectors.destinations.kafka.destination import KafkaDestination
from tideflow.connectors.sources.kafka.config import KafkaSourceConfig
from tideflow.connectors.sources.kafka.source import KafkaSource
from tideflow.envelope import json_value
from tideflow.events import UNCHANGED, Batch, ChangeEvent, Commit, Record

pytestmark = pytest.mark.integration
PREFIX = "tfk-src-"


@pytest.fixture(scope="module", autouse=True)
def _broker() -> Iterator[None]:
    kafka.broker()
    yield
    kafka.delete_topics_with_prefix(PREFIX)


def write(prefix: str, events: list[ChangeEvent], *, schemas: bool) -> None:
    cfg = KafkaDestinationConfig.model_validate(
        kafka.dest_config(**{"topic.prefix": prefix, "json.schema.enable": schemas})
    )
    dest = KafkaDestination(cfg, name="src-test")
    dest.open()
    dest.write(Batch(events=events))
    dest.close()


def source(name: str, **config: Any) -> KafkaSource:
    cfg = KafkaSourceConfig.model_validate({"kafka.bootstrap.servers": kafka.BOOTSTRAP, **config})
    return KafkaSource(cfg, name=name)


def read(src: KafkaSource, count: int, timeout: float = 30.0) -> list[Record]:
    """Poll until ``count`` change events arrived (then one more empty poll)."""
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records += src.poll(0.5, 500)
        if len(events_of(records)) >= count:
            records += src.poll(0.5, 500)
            return records
    raise AssertionError(f"got {len(events_of(records))} of {count} events in {timeout}s")


def events_of(records: Sequence[Record]) -> list[ChangeEvent]:
    return [r for r in records if isinstance(r, ChangeEvent)]


def last_commit(records: Sequence[Record]) -> Commit:
    commits = [r for r in records if isinstance(r, Commit)]
    assert commits, "no Commit record"
    return commits[-1]


def test_envelopes_with_schemas_come_back_equal_to_the_originals() -> None:
    prefix = kafka.unique(PREFIX + "rt") + "."
    originals = kafka.every_op_events()
    write(prefix, originals, schemas=True)
    src = source(kafka.unique("rt"), **{"topic.prefix": prefix, "schemas.enable": True})
    src.open(None)
    try:
        records = read(src, len(originals))
    finally:
        src.close()
    decoded = events_of(records)
    assert decoded == originals  # op, table schema, images, position, commit time, txid, snapshot
    assert decoded[3].after is not None and decoded[3].after["j"] is UNCHANGED
    assert last_commit(records).position["offsets"] == {f"{prefix}public.every_kind:0": 7}


def test_schemaless_envelopes_are_inferred() -> None:
    prefix = kafka.unique(PREFIX + "nos") + "."
    originals = kafka.every_op_events()
    write(prefix, originals, schemas=False)
    src = source(
        kafka.unique("nos"), **{"topic.include.list.user.defined": f"{prefix}public.every_kind"}
    )
    src.open(None)
    try:
        decoded = events_of(read(src, len(originals)))
    finally:
        src.close()
    assert [e.op for e in decoded] == [e.op for e in originals]
    for got, want in zip(decoded, originals, strict=True):
        assert got.table.name == "public.every_kind"
        assert got.table.key == ("id",)
        assert (got.position, got.txid, got.snapshot) == (want.position, want.txid, want.snapshot)
        for image in ("before", "after"):
            g, w = getattr(got, image), getattr(want, image)
            assert (g is None) == (w is None)
            if g is not None and w is not None:
                assert json_value({k: v for k, v in g.items() if v is not UNCHANGED}) == json_value(
                    {k: v for k, v in w.items() if v is not UNCHANGED}
                )


def test_offsets_are_committed_only_on_ack() -> None:
    prefix = kafka.unique(PREFIX + "ack") + "."
    events = kafka.every_op_events()
    write(prefix, events[:2], schemas=False)
    name = kafka.unique("ack")
    cfg = {"topic.prefix": prefix}
    src = source(name, **cfg)
    src.open(None)
    first = read(src, 2)
    src.close()
    # No ack: a reopen of the same group re-delivers everything.
    src = source(name, **cfg)
    src.open(None)
    again = read(src, 2)
    assert [e.op for e in events_of(again)] == [e.op for e in events_of(first)]
    src.ack(last_commit(again).position)  # invariant 1: the runtime acks after durability
    src.close()
    write(prefix, events[2:3], schemas=False)
    src = source(name, **cfg)
    src.open(None)
    after_ack = read(src, 1)
    assert [e.op.value for e in events_of(after_ack)] == ["u"]
    src.close()


def test_open_seeks_to_the_checkpoint_over_the_group_offsets() -> None:
    prefix = kafka.unique(PREFIX + "seek") + "."
    write(prefix, kafka.every_op_events(), schemas=False)
    name = kafka.unique("seek")
    src = source(name, **{"topic.prefix": prefix})
    src.open(None)
    records = read(src, 6)
    src.ack(last_commit(records).position)
    src.close()
    # The runtime's checkpoint says offset 2 (e.g. the ack of a later position was lost).
    checkpoint = {"consumed": 2, "offsets": {f"{prefix}public.every_kind:0": 2}}
    src = source(name, **{"topic.prefix": prefix})
    src.open(checkpoint)
    replay = events_of(read(src, 4))
    src.close()
    assert [e.op.value for e in replay] == ["u", "u", "d", "t"]


def test_plain_json_and_string_topics() -> None:
    topic = kafka.unique(PREFIX + "plain")
    admin = kafka.admin()
    from confluent_kafka.cimpl import NewTopic

    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    producer = Producer({"bootstrap.servers": kafka.BOOTSTRAP})
    producer.produce(topic, orjson.dumps({"sku": "a", "qty": 2}), orjson.dumps({"sku": "a"}))
    producer.produce(topic, None, orjson.dumps({"sku": "a"}))
    producer.flush(10)
    src = source(kafka.unique("plain"), **{"topic.include.list.user.defined": topic})
    src.open(None)
    events = events_of(read(src, 2))
    src.close()
    assert [(e.op.value, e.table.name, e.table.key) for e in events] == [
        ("c", f"kafka.{topic}", ("sku",)),
        ("d", f"kafka.{topic}", ("sku",)),
    ]
    assert events[0].after == {"sku": "a", "qty": 2} and events[1].before == {"sku": "a"}
    src = source(
        kafka.unique("str"), **{"topic.include.list.user.defined": topic, "format": "string"}
    )
    src.open(None)
    strings = events_of(read(src, 2))
    src.close()
    assert strings[0].after == {
        "partition": 0,
        "offset": 0,
        "key": '{"sku":"a"}',
        "value": '{"sku":"a","qty":2}',
    }
