"""kafkadirect shards (``partition.shard.count``/``index``, used by sharded pipelines in cluster
log mode) against the real broker: shards of one group read disjoint partition sets that
together cover the topic, each commits and resumes only its own partitions, and one key's
messages (one partition) all reach the same shard in order."""

from __future__ import annotations

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
PREFIX = "tfk-shards-"
PARTITIONS, SHARDS, KEYS, VERSIONS = 5, 2, 40, 3


@pytest.fixture(scope="module", autouse=True)
def _broker() -> Iterator[None]:
    kafka.broker()
    yield
    kafka.delete_topics_with_prefix(PREFIX)


def shard(prefix: str, group: str, index: int) -> KafkaSource:
    cfg = KafkaSourceConfig.model_validate(
        {
            "kafka.bootstrap.servers": kafka.BOOTSTRAP,
            "topic.prefix": prefix,
            "group.id": group,
            "partition.assignment": "manual",
            "partition.shard.count": SHARDS,
            "partition.shard.index": index,
        }
    )
    return KafkaSource(cfg, name=f"{group}-{index}")


def drain(src: KafkaSource, idle_polls: int = 6) -> tuple[list[tuple[int, int, int]], Commit]:
    """(partition, key, version) of everything readable now, and the last Commit."""
    got: list[tuple[int, int, int]] = []
    last: Commit | None = None
    idle = 0
    while idle < idle_polls:
        records = src.poll(0.5, 500)
        idle = 0 if records else idle + 1
        for r in records:
            if isinstance(r, ChangeEvent):
                assert r.after is not None
                got.append((_partition_of(r), int(r.after["k"]), int(r.after["v"])))
            elif isinstance(r, Commit):
                last = r
    assert last is not None
    return got, last


def _partition_of(event: ChangeEvent) -> int:
    # The decoder puts topic and partition in the event's source position.
    return int(event.position["partition"])


def test_shards_split_the_partitions_and_keep_each_keys_order() -> None:
    prefix = kafka.unique(PREFIX) + "."
    topic, group = prefix + "t", kafka.unique("tfk-shards-group")
    admin = kafka.admin()
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": kafka.BOOTSTRAP, "partitioner": "murmur2_random"})
    for v in range(VERSIONS):
        for k in range(KEYS):
            key = orjson.dumps({"k": k})
            producer.produce(topic, orjson.dumps({"k": k, "v": v}), key)
    assert producer.flush(30) == 0

    shards = [shard(prefix, group, i) for i in range(SHARDS)]
    read: list[list[tuple[int, int, int]]] = []
    try:
        for s in shards:
            s.open(None)
        for s in shards:
            got, commit = drain(s)
            read.append(got)
            parts = {int(key.rpartition(":")[2]) for key in commit.position["offsets"]}
            assert parts == {p for p in range(PARTITIONS) if p % SHARDS == shards.index(s)}
            s.ack(commit.position)
    finally:
        for s in shards:
            s.close()
    # Disjoint and complete: every (key, version) exactly once over the shards.
    every = sorted((k, v) for got in read for _, k, v in got)
    assert every == sorted((k, v) for k in range(KEYS) for v in range(VERSIONS))
    for index, got in enumerate(read):
        assert {p % SHARDS for p, _, _ in got} == {index}
        by_key: dict[int, list[int]] = {}
        for _, k, v in got:
            by_key.setdefault(k, []).append(v)
        assert all(vs == list(range(VERSIONS)) for vs in by_key.values())  # order per key
    assert not {k for _, k, _ in read[0]} & {k for _, k, _ in read[1]}  # a key, one shard
    # Each shard committed only its partitions, all to the end.
    probe = Consumer({"bootstrap.servers": kafka.BOOTSTRAP, "group.id": group})
    committed = probe.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=10)
    ends = [probe.get_watermark_offsets(tp, timeout=10)[1] for tp in committed]
    probe.close()
    assert [tp.offset for tp in committed] == ends


def test_a_shard_starts_at_the_newer_of_its_checkpoint_and_the_group_offsets() -> None:
    prefix = kafka.unique(PREFIX) + "."
    topic, group = prefix + "t", kafka.unique("tfk-shards-group")
    admin = kafka.admin()
    admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": kafka.BOOTSTRAP})
    for v in range(4):
        for p in (0, 1):
            producer.produce(topic, orjson.dumps({"k": p, "v": v}), partition=p)
    assert producer.flush(30) == 0
    # Another layout read and committed partition 0 up to offset 3 after this shard's
    # checkpoint said 1 (stale): the shard resumes at 3, the newer durable point.
    committer = Consumer({"bootstrap.servers": kafka.BOOTSTRAP, "group.id": group})
    committer.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
    committer.close()
    src = shard(prefix, group, 0)
    # Partition 1 is not this shard's; its offset in the position is dropped.
    src.open({"offsets": {f"{topic}:0": 1, f"{topic}:1": 0}})
    try:
        got, commit = drain(src)
    finally:
        src.close()
    assert got == [(0, 0, 3)], got
    assert commit.position["offsets"] == {f"{topic}:0": 4}
    # A checkpoint newer than the group's offset (a crash between the checkpoint and the
    # commit) wins: nothing is read twice beyond it.
    again = shard(prefix, group, 0)
    again.open({"offsets": {f"{topic}:0": 4}})
    producer.produce(topic, orjson.dumps({"k": 0, "v": 4}), partition=0)
    assert producer.flush(30) == 0
    try:
        got, _ = drain(again)
    finally:
        again.close()
    assert got == [(0, 0, 4)], got
