"""kafkadirect with ``partition.assignment=manual`` (used by cluster log mode) against the
real broker: no group membership, new topics picked up, resume from the checkpoint, offsets
committed to the group."""

from __future__ import annotations

import time
from collections.abc import Iterator

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.cimpl import NewTopic

from tests.support import kafka
from tideflow.connectors.sources.kafka.config import KafkaSourceConfig
from tideflow.connectors.sources.kafka.source import KafkaSource
from tideflow.events import ChangeEvent, Commit

pytestmark = pytest.mark.integration
PREFIX = "tfk-manual-"


@pytest.fixture(scope="module", autouse=True)
def _broker() -> Iterator[None]:
    kafka.broker()
    yield
    kafka.delete_topics_with_prefix(PREFIX)


def produce(topic: str, ids: range) -> None:
    admin = kafka.admin()  # kept alive until the future resolves
    if topic not in admin.list_topics(timeout=10).topics:
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": kafka.BOOTSTRAP})
    for i in ids:
        producer.produce(topic, orjson.dumps({"id": i}), orjson.dumps({"id": i}))
    assert producer.flush(30) == 0


def reader(prefix: str, group: str) -> KafkaSource:
    cfg = KafkaSourceConfig.model_validate(
        {
            "kafka.bootstrap.servers": kafka.BOOTSTRAP,
            "topic.prefix": prefix,
            "group.id": group,
            "partition.assignment": "manual",
        }
    )
    return KafkaSource(cfg, name=group)


def read_ids(src: KafkaSource, count: int, timeout: float = 40.0) -> tuple[list[int], Commit]:
    ids: list[int] = []
    last: Commit | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(ids) < count:
        for r in src.poll(0.5, 500):
            if isinstance(r, ChangeEvent):
                assert r.after is not None
                ids.append(int(r.after["id"]))
            elif isinstance(r, Commit):
                last = r
    assert len(ids) == count and last is not None, ids
    return ids, last


def test_manual_assignment_reads_new_topics_resumes_and_commits() -> None:
    prefix = kafka.unique(PREFIX) + "."
    group = kafka.unique("tfk-manual-group")
    produce(prefix + "a", range(0, 5))
    src = reader(prefix, group)
    src.open(None)
    try:
        ids, commit = read_ids(src, 5)
        assert sorted(ids) == list(range(5))
        produce(prefix + "b", range(100, 103))  # a topic created after open
        more, commit = read_ids(src, 3)
        assert sorted(more) == [100, 101, 102]
        src.ack(commit.position)  # a standalone commit: the group has no members
    finally:
        src.close()
    probe = Consumer({"bootstrap.servers": kafka.BOOTSTRAP, "group.id": group})
    committed = probe.committed([TopicPartition(prefix + "a", 0), TopicPartition(prefix + "b", 0)])
    probe.close()
    assert [tp.offset for tp in committed] == [5, 3]
    # A second reader resumes from the checkpointed position, whatever the group says.
    produce(prefix + "a", range(5, 7))
    again = reader(prefix, group)
    again.open({"offsets": {f"{prefix}a:0": 4, f"{prefix}b:0": 3}})
    try:
        ids, _ = read_ids(again, 3)
        assert sorted(ids) == [4, 5, 6]
    finally:
        again.close()
