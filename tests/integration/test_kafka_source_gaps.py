"""kafkadirect source on the real broker: a position the broker no longer holds is a terminal
error naming the topic, partition and lost offsets, never a silent skip (invariant 5).

Retention is what moves a partition's log start in production; the broker checks retention
every 5 minutes (``log.retention.check.interval.ms``), so the tests move it the same way
retention does, with ``delete_records``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import NewTopic

from tests.support import kafka
from tideflow.connectors.sources.kafka import position as positions
from tideflow.connectors.sources.kafka.config import KafkaSourceConfig
from tideflow.connectors.sources.kafka.source import KafkaSource
from tideflow.errors import TerminalError
from tideflow.events import ChangeEvent, Record

pytestmark = pytest.mark.integration
PREFIX = "tfk-gap-"


@pytest.fixture(scope="module", autouse=True)
def _broker() -> Iterator[None]:
    kafka.broker()
    yield
    kafka.delete_topics_with_prefix(PREFIX)


def create_topic(name: str) -> None:
    # Tiny retention and segments, as a topic whose pipeline paused too long would have.
    config = {"retention.ms": "60000", "segment.bytes": "1048576"}
    client = kafka.admin()  # kept alive until the future resolves
    client.create_topics([NewTopic(name, 1, 1, config=config)])[name].result(30)


def produce(topic: str, start: int, count: int) -> None:
    producer = Producer({"bootstrap.servers": kafka.BOOTSTRAP})
    for i in range(start, start + count):
        producer.produce(topic, key=str(i).encode(), value=orjson.dumps({"id": i}))
    assert producer.flush(30) == 0


def delete_records_before(topic: str, offset: int) -> None:
    """What retention does: move the partition's log start to ``offset``."""
    client = kafka.admin()
    for f in client.delete_records([TopicPartition(topic, 0, offset)]).values():
        assert f.result(30).low_watermark == offset


def source(topic: str, assignment: str = "manual") -> KafkaSource:
    cfg = KafkaSourceConfig.model_validate(
        {
            "kafka.bootstrap.servers": kafka.BOOTSTRAP,
            "topic.include.list.user.defined": topic,
            "format": "json",
            "group.id": kafka.unique("gap"),
            "partition.assignment": assignment,
        }
    )
    return KafkaSource(cfg, name="gaps")


def at(topic: str, offset: int) -> dict[str, Any]:
    return positions.make({positions.partition_key(topic, 0): offset})


def read_ids(src: KafkaSource, count: int, timeout: float = 30.0) -> list[int]:
    records: list[Record] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records += src.poll(0.5, 500)
        ids = [int(r.after["id"]) for r in records if isinstance(r, ChangeEvent) and r.after]
        if len(ids) >= count:
            return ids
    raise AssertionError(f"read {records!r} in {timeout}s")


def gap_error(src: KafkaSource, position: dict[str, Any], timeout: float = 30.0) -> TerminalError:
    """The error of opening ``src`` at ``position`` and reading on (either may report it)."""
    try:
        src.open(position)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            src.poll(0.5, 500)
    except TerminalError as exc:
        return exc
    finally:
        src.close()
    raise AssertionError("no gap reported")


# manual: found when the partition is assigned; group: on the first message after the jump.
@pytest.mark.parametrize("assignment", ["manual", "group"])
def test_a_position_older_than_the_log_start_is_a_gap_naming_the_lost_offsets(
    assignment: str,
) -> None:
    topic = kafka.unique(PREFIX + "ret")
    create_topic(topic)
    produce(topic, 0, 10)
    delete_records_before(topic, 7)
    # A pipeline paused at offset 3 while retention removed 0..6.
    exc = gap_error(source(topic, assignment), at(topic, 3))
    assert exc.code == "log_gap"
    assert f"topic {topic} partition 0" in exc.message
    assert "offsets 3 to 6 were deleted" in exc.message
    assert "re-snapshot" in exc.message and "replay" in exc.message


def test_a_position_at_the_log_start_reads_on_without_error() -> None:
    topic = kafka.unique(PREFIX + "ok")
    create_topic(topic)
    produce(topic, 0, 10)
    delete_records_before(topic, 7)
    src = source(topic)
    src.open(at(topic, 7))
    try:
        assert read_ids(src, 3) == [7, 8, 9]
        produce(topic, 10, 2)
        assert read_ids(src, 2) == [10, 11]
    finally:
        src.close()


def test_a_recreated_topic_behind_the_position_is_a_gap() -> None:
    topic = kafka.unique(PREFIX + "new")
    create_topic(topic)
    produce(topic, 0, 10)
    client = kafka.admin()
    client.delete_topics([topic])[topic].result(30)
    deadline = time.monotonic() + 30
    while True:  # deletion completes asynchronously on the broker
        try:
            create_topic(topic)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    produce(topic, 100, 2)
    exc = gap_error(source(topic), at(topic, 10))
    assert exc.code == "log_gap"
    assert "deleted and recreated" in exc.message and "was 10" in exc.message


def test_a_gap_with_nothing_after_it_is_reported_at_once() -> None:
    topic = kafka.unique(PREFIX + "run")
    create_topic(topic)
    produce(topic, 0, 5)
    src = source(topic)
    src.open(at(topic, 0))
    try:
        assert read_ids(src, 5) == [0, 1, 2, 3, 4]
    finally:
        src.close()
    # Paused at 5; retention removes everything up to the end (nothing follows the gap).
    produce(topic, 5, 5)
    delete_records_before(topic, 10)
    exc = gap_error(source(topic), at(topic, 5))
    assert "offsets 5 to 9 were deleted" in exc.message
