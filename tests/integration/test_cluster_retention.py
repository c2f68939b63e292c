"""Log retention watching (engine/cluster/retention.py) on the real broker.

The share of ``retention.ms`` that a pipeline's oldest unconsumed change has used: messages
are produced with old timestamps (CreateTime) into a topic created with a short retention.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from tests.support import kafka
from tideflow.connectors.sources.kafka import position as positions
from tideflow.engine.alerts import CRITICAL, HEALTHY, WARNING, level, thresholds
from tideflow.engine.cluster.retention import RetentionWatch
from tideflow.store.db import Store
from tideflow.store.models.runtime import Checkpoint

pytestmark = pytest.mark.integration
PREFIX = "tfk-ret-"
RETENTION_MS = 600_000


@pytest.fixture
def topic() -> Iterator[str]:
    name = kafka.unique(PREFIX) + ".public.items"
    client = kafka.admin()
    config = {"retention.ms": str(RETENTION_MS), "segment.bytes": "1048576"}
    client.create_topics([NewTopic(name, 1, 1, config=config)])[name].result(30)
    now_ms = int(time.time() * 1000)
    producer = Producer({"bootstrap.servers": kafka.BOOTSTRAP})
    for age_s in (540, 300, 60):  # offsets 0, 1, 2
        producer.produce(name, b"v", timestamp=now_ms - age_s * 1000)
    assert producer.flush(30) == 0
    yield name
    kafka.delete_topics_with_prefix(name)


def at(store: Store, pipeline_id: str, topic: str, offset: int) -> None:
    position = positions.make({positions.partition_key(topic, 0): offset})
    with store.session() as s:
        row = s.get(Checkpoint, f"pipeline:{pipeline_id}/log")
        if row is None:
            s.add(Checkpoint(unit=f"pipeline:{pipeline_id}/log", version=1, position=position))
        else:
            row.position = position


def test_the_backlog_age_is_measured_against_the_topics_retention(
    topic: str, tmp_path: Path
) -> None:
    store = Store(f"sqlite:///{tmp_path}/meta.db")
    store.migrate()
    watch = RetentionWatch(store, kafka.BOOTSTRAP, every=0)
    try:
        at(store, "p1", topic, 0)  # nothing consumed: the oldest change is 540 s old
        used = watch.used(["p1"])["p1"]
        assert 0.88 <= used <= 0.95, used
        assert level({"log_retention_used": used}, thresholds())[0] == WARNING

        at(store, "p1", topic, 2)
        assert 0.09 <= watch.used(["p1"])["p1"] <= 0.15

        at(store, "p1", topic, 3)  # caught up
        assert watch.used(["p1"]) == {"p1": 0.0}
        assert level({"log_retention_used": 0.0}, thresholds())[0] == HEALTHY
        assert level({"log_retention_used": 0.97}, thresholds())[0] == CRITICAL

        assert watch.used(["unknown"]) == {}  # no log checkpoint: nothing to say
    finally:
        watch.close()
        store.dispose()
