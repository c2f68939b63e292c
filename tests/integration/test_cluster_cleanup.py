"""Log-mode cleanup after deletes (engine/cluster/cleanup.py), real Postgres store and broker.

A deleted pipeline's consumer group and a deleted source's topics are removed once no worker
may run them, the log checkpoints that pointed at them are forgotten afterwards, a broker
outage only delays the cleanup, and sweeping again is harmless.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from tests.support import kafka, stores
from tideflow.engine.cluster import cleanup
from tideflow.engine.cluster.logmode import group_id, topic_prefix
from tideflow.store.db import Store
from tideflow.store.models.cluster import Lease
from tideflow.store.models.runtime import Checkpoint

pytestmark = pytest.mark.integration


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with stores.migrated("postgres", tmp_path, "tfclean") as s:
        yield s


def fake_id() -> str:
    return uuid.uuid4().hex[:24]


def make_topic(source_id: str) -> str:
    """A source's log topic with one message."""
    topic = topic_prefix(source_id) + "public.items"
    client = kafka.admin()
    client.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": kafka.BOOTSTRAP})
    producer.produce(topic, b"v")
    assert producer.flush(30) == 0
    return topic


def make_group(pipeline_id: str, topic: str) -> str:
    """A pipeline's consumer group with its offset committed on ``topic``."""
    group = group_id(pipeline_id)
    consumer = Consumer({"bootstrap.servers": kafka.BOOTSTRAP, "group.id": group})
    consumer.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    consumer.close()
    return group


def committed(group: str, topic: str) -> int:
    """The group's committed offset on ``topic`` (negative: none, the group is gone)."""
    client = kafka.admin()
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])
    got = client.list_consumer_group_offsets([request])[group].result(30)
    return int(got.topic_partitions[0].offset)


def topics() -> set[str]:
    return set(kafka.admin().list_topics(timeout=30).topics)


def checkpoints(store: Store) -> set[str]:
    with store.session() as s:
        return {c.unit for c in s.query(Checkpoint).all()}


def add_checkpoint(store: Store, unit: str) -> None:
    with store.session() as s:
        s.add(Checkpoint(unit=unit, version=1, position={"consumed": 1}, generation=1))


def test_a_deleted_pipelines_group_and_a_deleted_sources_topics_are_removed(
    store: Store,
) -> None:
    # A deleted source with its log topic, and a deleted pipeline that read a source that
    # still exists (its group holds offsets of that source's topic).
    gone_source, kept_source, pid = fake_id(), fake_id(), fake_id()
    gone_topic, kept_topic = make_topic(gone_source), make_topic(kept_source)
    group = make_group(pid, kept_topic)
    try:
        # The store after the API deleted both: only their log checkpoints are left, and the
        # pipeline's unit still runs on a worker (its lease is live).
        add_checkpoint(store, f"log:{gone_source}")
        add_checkpoint(store, f"pipeline:{pid}/log")
        with store.session() as s:
            s.add(
                Lease(
                    kind="pipeline",
                    unit_id=pid,
                    owner="w1",
                    generation=1,
                    expires_at=datetime.now(UTC) + timedelta(minutes=5),
                )
            )
        assert cleanup.sweep(store, kafka.BOOTSTRAP) == [gone_topic]
        assert gone_topic not in topics() and kept_topic in topics()
        assert committed(group, kept_topic) == 1, "a running pipeline's group must stay"

        # The unit stopped, but the broker is unreachable: nothing is forgotten.
        with store.session() as s:
            lease = s.get(Lease, ("pipeline", pid))
            assert lease is not None
            lease.owner = ""
        proxy = kafka.BrokerProxy().start()
        proxy.cut()
        try:
            assert cleanup.sweep(store, f"127.0.0.1:{proxy.port}", timeout=3) == []
        finally:
            proxy.stop()
        assert f"pipeline:{pid}/log" in checkpoints(store)
        assert committed(group, kept_topic) == 1

        # Next round, the broker is back: the group goes, then the checkpoint.
        assert cleanup.sweep(store, kafka.BOOTSTRAP) == [group]
        assert committed(group, kept_topic) < 0
        assert not {f"log:{gone_source}", f"pipeline:{pid}/log"} & checkpoints(store)
        assert cleanup.sweep(store, kafka.BOOTSTRAP) == []  # idempotent
    finally:
        for sid in (gone_source, kept_source):
            kafka.delete_topics_with_prefix(topic_prefix(sid))
        client = kafka.admin()
        for f in client.delete_consumer_groups([group], request_timeout=30).values():
            with contextlib.suppress(Exception):
                f.result(30)


def test_checkpoints_of_existing_or_other_units_are_left_alone(store: Store) -> None:
    add_checkpoint(store, "pipeline:somepipeline")  # direct mode: not the log's
    add_checkpoint(store, "snapshot:whatever")
    assert not cleanup.leftovers(store)
    assert checkpoints(store) == {"pipeline:somepipeline", "snapshot:whatever"}


def test_fan_in_and_shard_checkpoints_name_their_groups(store: Store) -> None:
    for unit in ("pipeline:p9/s9/log", "pipeline:p8/log#0/2", "pipeline:p8/log#1/2"):
        add_checkpoint(store, unit)
    add_checkpoint(store, "pipeline:p7/log#1/2")
    with store.session() as s:  # shard 1 of p7 still runs somewhere
        s.add(
            Lease(
                kind="pipeline",
                unit_id="p7#1",
                owner="w2",
                generation=3,
                expires_at=datetime.now(UTC) + timedelta(minutes=5),
            )
        )
    found = cleanup.leftovers(store)
    assert found.groups == {
        "tideflow-pipeline-p9-s9": ["pipeline:p9/s9/log"],
        "tideflow-pipeline-p8": ["pipeline:p8/log#0/2", "pipeline:p8/log#1/2"],
    }
    assert found.topics == {}
