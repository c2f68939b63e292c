"""The ``kafkadirect`` source: reads topics of one consumer group into change events.

Progress is the consumer group's committed offsets, and they are committed **only** in
``ack`` (invariant 1: the runtime calls it once the events up to that position are durable at
every destination and checkpointed); auto-commit and offset storing are off, and nothing is
committed on rebalance or close. ``open(position)`` seeks every assigned partition to the
checkpointed offsets (the checkpoint wins over the group's offsets, which may be older when a
crash happened between the checkpoint and the commit), so a restart re-reads from the last
durable point: duplicates, never gaps (invariant 2). Per-partition order is kept, and producers
key messages by primary key, so order per key holds (invariant 3).

With ``partition.assignment=manual`` the consumer does not join the group: it assigns itself
every partition of the matching topics (re-listed every few seconds, so new topics are picked
up; with ``partition.shard.count`` N > 1 only the partitions ``p`` with ``p mod N`` equal to
``partition.shard.index``, so N sources split the topics without overlap) and commits to the
group as a standalone consumer, only the partitions it reads. A commit the group refuses
because of its membership (a rebalance, a member of an older process) is skipped: the
checkpoint, not the group's offsets, is where a restart resumes.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import OFFSET_STORED, Consumer, KafkaError, KafkaException, TopicPartition

from tideflow.connectors.base import Problem, Source
from tideflow.connectors.sources.kafka import gaps
from tideflow.connectors.sources.kafka import position as positions
from tideflow.connectors.sources.kafka.config import KafkaSourceConfig
from tideflow.connectors.sources.kafka.decode import Decoder, Received
from tideflow.errors import TerminalError, TransientError
from tideflow.events import Commit, Record

log = logging.getLogger(__name__)

_TERMINAL = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._AUTHENTICATION,
    }
)
# Topics named in the include list may not exist yet (a Kafka destination creates its topics
# on first write); they are picked up on the next metadata refresh.
_IGNORED = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._PARTITION_EOF})
# Commits refused because of group membership: harmless, the checkpoint wins on open().
_MEMBERSHIP = frozenset(
    {
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError._NO_OFFSET,
    }
)
_REFRESH_S = 5.0  # manual assignment: how often the topic list is read again


class KafkaSource(Source[KafkaSourceConfig]):
    """One consumer in the group ``group.id`` (default ``tideflow-<name>``)."""

    connector = "kafkadirect"

    def __init__(self, config: KafkaSourceConfig, *, name: str) -> None:
        super().__init__(config, name=name)
        self._consumer: Consumer | None = None
        self._offsets: dict[str, int] = {}
        self._decoder = Decoder(format=config.format)
        self._client_error: KafkaError | None = None
        self._assigned: set[tuple[str, int]] = set()
        self._refreshed = 0.0
        self._warned: set[str] = set()

    @property
    def group_id(self) -> str:
        return self.config.group_id or f"tideflow-{self.name}"

    def _subscription(self) -> list[str]:
        subs = self.config.topics()
        if self.config.topic_prefix:
            # librdkafka treats names starting with '^' as regular expressions.
            subs.append("^" + re.escape(self.config.topic_prefix) + ".*")
        return subs

    def preflight(self) -> list[Problem]:
        if not self._subscription():
            return [
                Problem(
                    "topics",
                    "set topic.include.list.user.defined or topic.prefix: no topic to read",
                )
            ]
        return []

    def open(self, position: dict[str, Any] | None) -> None:
        subs = self._subscription()
        if not subs:
            raise TerminalError(self.preflight()[0].message, code="invalid_config")
        # A shard's checkpoint holds its own partitions only (it never had others).
        self._offsets = {
            key: offset
            for key, offset in positions.offsets_of(position).items()
            if self.config.owns(positions.partition_of(key))
        }
        self._consumer = Consumer(
            {
                "bootstrap.servers": self.config.bootstrap,
                "group.id": self.group_id,
                "client.id": f"tideflow-{self.name}",
                # invariant 1: offsets are committed in ack() only.
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                # Never read what a transactional producer may still abort.
                "isolation.level": "read_committed",
                "topic.metadata.refresh.interval.ms": 5000,
                "error_cb": self._on_error,
                **self.config.client_settings(),
            }
        )
        if self.config.assignment == "manual":
            self._assigned, self._refreshed = set(), 0.0
            self._assign_new(self._consumer)
        else:
            self._consumer.subscribe(subs, on_assign=self._on_assign)

    def _assign_new(self, consumer: Consumer) -> None:
        """Manual assignment: take every partition of the matching topics not taken yet."""
        self._refreshed = time.monotonic()
        try:
            topics = consumer.list_topics(timeout=10).topics
        except KafkaException as exc:
            raise TransientError(f"cannot read Kafka metadata: {exc}") from None
        names, prefix = set(self.config.topics()), self.config.topic_prefix
        new = []
        for name, meta in topics.items():
            if name not in names and not (prefix and name.startswith(prefix)):
                continue
            self._warn_unsharded(name, len(meta.partitions))
            for partition in meta.partitions:
                if (name, partition) in self._assigned or not self.config.owns(partition):
                    continue
                # Unknown to the checkpoint: the group's offset, else auto.offset.reset.
                offset = self._offsets.get(positions.partition_key(name, partition), OFFSET_STORED)
                new.append(TopicPartition(name, partition, offset))
        if new and self.config.shard_count > 1:
            new = self._newer_of_group(consumer, new)
        if new:
            # invariant 5: a position the partition no longer holds is a gap at once.
            gaps.check_assigned(consumer, new)
            consumer.incremental_assign(new)
            self._assigned |= {(tp.topic, tp.partition) for tp in new}

    def _newer_of_group(
        self, consumer: Consumer, wanted: list[TopicPartition]
    ) -> list[TopicPartition]:
        """A shard starts each partition at the newer of its checkpoint and the group's
        committed offset: after a change of the shard count another shard may have read the
        partition since this shard's checkpoint was written. Both are durable points (offsets
        are committed only after the checkpoint, invariant 1), so the newer skips nothing."""
        try:
            committed = consumer.committed(
                [TopicPartition(tp.topic, tp.partition) for tp in wanted], timeout=10
            )
        except KafkaException as exc:
            raise TransientError(f"cannot read the group's committed offsets: {exc}") from None
        out = []
        for tp, group in zip(wanted, committed, strict=True):
            offset = max(tp.offset, group.offset)
            if offset < 0:
                offset = OFFSET_STORED  # neither: auto.offset.reset
            else:  # the gap check (invariant 5) expects the offset really started from
                self._offsets[positions.partition_key(tp.topic, tp.partition)] = offset
            out.append(TopicPartition(tp.topic, tp.partition, offset))
        return out

    def _warn_unsharded(self, topic: str, partitions: int) -> None:
        count = self.config.shard_count
        if count <= partitions or topic in self._warned:
            return
        self._warned.add(topic)
        if self.config.shard_index >= partitions:
            log.warning(
                "kafkadirect source %s: topic %s has %d partition(s), fewer than the %d shards "
                "sharing it: shard %d reads nothing of it, the others read it all (partitions are "
                "never added to an existing topic: keys would move and lose their order)",
                self.name,
                topic,
                partitions,
                count,
                self.config.shard_index,
            )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # What this instance has read (initially the checkpoint) wins over the group's
        # committed offsets, which may be older (see the module docs).
        for tp in partitions:
            offset = self._offsets.get(positions.partition_key(tp.topic, tp.partition))
            if offset is not None:
                tp.offset = offset
        consumer.assign(partitions)

    def _on_error(self, err: KafkaError) -> None:
        self._client_error = err

    def poll(self, timeout: float, max_records: int) -> Sequence[Record]:
        """Up to ``max_records`` events, then a Commit with the offsets after them."""
        consumer = self._consumer
        if consumer is None:
            raise TransientError("kafkadirect source is not open")
        if self.config.assignment == "manual" and time.monotonic() - self._refreshed > _REFRESH_S:
            self._assign_new(consumer)
        try:
            messages = consumer.consume(num_messages=max(1, max_records), timeout=timeout)
        except KafkaException as exc:
            raise TransientError(f"Kafka consume failed: {exc}") from None
        records: list[Record] = []
        last_ts = 0
        for msg in messages:
            err = msg.error()
            if err is not None:
                self._raise_for(err)
                continue
            topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
            ts_type, ts = msg.timestamp()
            last_ts = max(last_ts, ts if ts_type and ts > 0 else int(time.time() * 1000))
            key = positions.partition_key(topic, partition)
            expected = self._offsets.get(key)
            if expected is not None and offset != expected:
                # invariant 5: a position the broker no longer holds is an error, not a skip.
                gaps.check(consumer, topic, partition, expected, offset)
            event = self._decoder.decode(
                Received(topic, partition, offset, msg.key(), msg.value(), last_ts)
            )
            self._offsets[key] = offset + 1
            if event is not None:
                records.append(event)
        if last_ts:
            records.append(Commit(positions.make(self._offsets), commit_ts_ms=last_ts))
        else:
            self._check_client_error()
        return records

    def _raise_for(self, err: KafkaError) -> None:
        if err.code() in _IGNORED:
            return
        if err.fatal() or err.code() in _TERMINAL:
            raise TerminalError(f"Kafka consumer failed: {err.str()}", code="kafka_consumer")
        raise TransientError(f"Kafka consumer error: {err.str()}")

    def _check_client_error(self) -> None:
        err, self._client_error = self._client_error, None
        if err is None:
            return
        if err.fatal() or err.code() in _TERMINAL:
            raise TerminalError(f"Kafka consumer failed: {err.str()}", code="kafka_consumer")
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            raise TransientError(f"Kafka brokers unreachable: {err.str()}")

    def ack(self, position: dict[str, Any]) -> None:
        """Commit the group offsets of ``position`` (invariant 1: called after durability)."""
        consumer = self._consumer
        offsets = positions.topic_partitions(position)
        if consumer is None or not offsets:
            return
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if err is not None and err.code() in _MEMBERSHIP:
                log.debug("kafkadirect source %s: offsets not committed: %s", self.name, err)
                return
            raise TransientError(f"cannot commit Kafka offsets: {exc}") from None

    def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        try:
            # No commit on close (auto-commit is off): only ack() moves the group offsets.
            consumer.close()
        except Exception:  # close must not raise (contract)
            log.warning("kafkadirect source %s: close failed", self.name, exc_info=True)
