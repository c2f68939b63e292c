"""Transactional mode: never write twice what a crashed writer already committed.

The runtime checkpoints a batch only after ``write`` returned, so after a crash it replays
from the checkpoint ``C`` batches that may already be committed in Kafka (invariant 2 allows
it; a ``read_committed`` consumer would see those changes twice). In transactional mode every
message carries the position of its batch in the :data:`HEADER` header. When the destination
resumes from ``C`` it reads back, per topic, the committed messages whose batch position is not
older than ``C`` (every change after ``C`` lives in such a batch) and remembers which changes
they hold. The replay after ``C`` is the same stream again, and Kafka holds a prefix of it, so
the replayed changes found there are skipped until the first one that is not: from then on the
topic is caught up and nothing is looked up any more.

A change is identified by (transaction id, source position, op, message key): the position of
a Postgres change is its own WAL location, so the identity is unique.
"""

from __future__ import annotations

from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from tideflow.engine import positions
from tideflow.envelope import json_value
from tideflow.errors import TransientError
from tideflow.events import ChangeEvent

HEADER = "tideflow.position"
_SOURCE_FIXED = frozenset(
    {"version", "connector", "name", "ts_ms", "snapshot", "db", "schema", "table", "txId"}
)
_FIRST_WINDOW = 1000

Identity = tuple[Any, bytes, str, bytes | None]


def position_header(position: dict[str, Any] | None) -> bytes:
    return orjson.dumps(position)


def event_identity(event: ChangeEvent, key: bytes | None) -> Identity:
    pos = orjson.dumps(event.position, option=orjson.OPT_SORT_KEYS, default=json_value)
    return (event.txid, pos, event.op.value, key)


def _message_identity(key: bytes | None, value: bytes) -> Identity | None:
    try:
        env = orjson.loads(value)
        if "payload" in env and "source" not in env:  # json.schema.enable
            env = env["payload"]
        source = env["source"]
        pos = {k: v for k, v in source.items() if k not in _SOURCE_FIXED}
        return (
            source.get("txId"),
            orjson.dumps(pos, option=orjson.OPT_SORT_KEYS),
            env["op"],
            key,
        )
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None


def _header_position(headers: list[tuple[str, bytes]] | None) -> tuple[bool, Any]:
    """(written by a transactional Tideflow writer, its batch position)."""
    for name, data in headers or ():
        if name == HEADER:
            return True, orjson.loads(data)
    return False, None


class Resume:
    """Which changes of the replay after ``resume`` are already committed, per topic.

    Not thread-safe (one per destination instance).
    """

    def __init__(
        self, client_conf: dict[str, Any], resume: dict[str, Any] | None, timeout: float
    ) -> None:
        self._conf = {
            **client_conf,
            "group.id": f"{client_conf.get('client.id', 'tideflow')}-resume",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
        }
        self._resume = resume
        self._timeout = timeout
        self._written: dict[str, set[Identity]] = {}
        self._caught_up: set[str] = set()

    def active(self, topic: str) -> bool:
        return topic not in self._caught_up

    def written(self, topic: str) -> set[Identity]:
        """The identities of the changes after the resume position committed to ``topic``."""
        known = self._written.get(topic)
        if known is None:
            known = self._written[topic] = self._read(topic)
            if not known:
                self.caught_up(topic)
        return known

    def caught_up(self, topic: str) -> None:
        """The replay reached changes ``topic`` does not hold: stop looking them up."""
        self._caught_up.add(topic)
        self._written.pop(topic, None)

    def _newer(self, found: bool, position: Any) -> bool:
        if not found:
            return False  # not written by a transactional Tideflow writer
        if self._resume is None:
            return True  # no checkpoint yet: every change written may be replayed
        if position is None:
            return False  # written before the first commit of the stream
        return not positions.before(position, self._resume)

    def _read(self, topic: str) -> set[Identity]:
        consumer = Consumer(self._conf)
        try:
            meta = consumer.list_topics(topic, timeout=self._timeout).topics.get(topic)
            if meta is None or meta.error is not None:
                return set()
            out: set[Identity] = set()
            for partition in meta.partitions:
                out |= self._read_partition(consumer, topic, partition)
            return out
        except KafkaException as exc:
            raise TransientError(
                f"cannot read back topic '{topic}' to resume the transactional writer: {exc}"
            ) from None
        finally:
            consumer.close()

    def _read_partition(self, consumer: Consumer, topic: str, partition: int) -> set[Identity]:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=self._timeout
        )
        out: set[Identity] = set()
        end, window = high, _FIRST_WINDOW
        # Windows backwards from the end, until a window starts with an older batch.
        while end > low:
            start = max(low, end - window)
            older = False
            for key, value, headers in self._range(consumer, topic, partition, start, end):
                found, position = _header_position(headers)
                if not self._newer(found, position):
                    older = True
                    continue
                if value is not None:
                    identity = _message_identity(key, value)
                    if identity is not None:
                        out.add(identity)
            if older:
                break
            end, window = start, window * 2
        return out

    def _range(
        self, consumer: Consumer, topic: str, partition: int, start: int, end: int
    ) -> list[tuple[bytes | None, bytes | None, Any]]:
        consumer.assign([TopicPartition(topic, partition, start)])
        out: list[tuple[bytes | None, bytes | None, Any]] = []
        while True:
            msg = consumer.poll(self._timeout)
            if msg is None:
                raise TransientError(
                    f"reading back topic '{topic}' [{partition}] timed out after "
                    f"{self._timeout:.0f}s"
                )
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    return out
                raise KafkaException(err)
            offset = msg.offset()
            if offset is None or offset >= end:
                return out
            out.append((msg.key(), msg.value(), msg.headers()))
