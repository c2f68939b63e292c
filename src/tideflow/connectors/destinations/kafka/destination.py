"""The ``kafka`` destination: one topic per table, Debezium envelopes, broker-acknowledged batches.

``write(batch)`` returns only when the broker has acknowledged every message of the batch
(``acks=all``, idempotent producer, flush + every delivery report checked), which is what lets
the runtime checkpoint the batch position afterwards (invariant 1). Keys are the primary key, so
Kafka's per-partition order keeps the per-key order (invariant 3); the murmur2 partitioner puts
a key in the same partition as Java clients (Debezium, Kafka Connect) would.

Without ``transactional``, a failed batch may have been partly written; the runtime replays it
(duplicates, never gaps: invariant 2). With ``transactional``, each batch is one Kafka
transaction: a failure or a crash aborts it (a restarted producer with the same
``transactional.id`` fences the old one and aborts its open transaction), so read_committed
consumers never see half a batch.
"""

from __future__ import annotations

import logging
import time
from itertools import groupby
from operator import attrgetter, itemgetter
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient

from tideflow.connectors.base import Destination
from tideflow.connectors.destinations.kafka import chunks
from tideflow.connectors.destinations.kafka.config import KafkaDestinationConfig
from tideflow.connectors.destinations.kafka.resume import (
    HEADER,
    Resume,
    event_identity,
    position_header,
)
from tideflow.connectors.destinations.kafka.serializer import Serializer
from tideflow.connectors.destinations.kafka.topics import Topics, kafka_error, topic_name
from tideflow.engine.errors import DeadLetter, Fenced, PoisonRecord
from tideflow.envelope import SourceInfo
from tideflow.errors import TerminalError, TideflowError, TransientError
from tideflow.events import Batch, ChangeEvent, Op, SnapshotChunk, TableSchema

log = logging.getLogger(__name__)

_OVERSIZE = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})
_DENIED = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)
_FENCED = frozenset(
    {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
)
# Serve delivery reports every this many messages so the local queue drains while producing.
_POLL_EVERY = 10_000
_DELETE = Op.DELETE
_TABLE = attrgetter("table")
_TOPIC = itemgetter(1)
#: a topic and the events of one table bound for it, in batch order
Run = tuple[str, list[ChangeEvent]]


def transactional_id(name: str) -> str:
    """One transactional.id per destination, so a restarted writer fences the previous one."""
    return f"tideflow-{name}"


class _Oversize(Exception):
    def __init__(self, event: ChangeEvent, error: str) -> None:
        super().__init__(error)
        self.event = event


class KafkaDestination(Destination[KafkaDestinationConfig]):
    """Writes each table's events to its own topic. One instance per pipeline thread."""

    connector = "kafka"
    #: snapshot chunks come as COPY text (see :meth:`_write_chunk`)
    takes_chunks = True

    def __init__(
        self, config: KafkaDestinationConfig, *, name: str, source: SourceInfo | None = None
    ) -> None:
        super().__init__(config, name=name)
        self._serializer = Serializer(schemas=config.json_schema_enable, name=name, source=source)
        self._mapping = config.topics()
        self._timeout = config.delivery_timeout_ms / 1000 + 10
        self._producer: Producer | None = None
        self._topics: Topics | None = None
        self._topic_cache: dict[int, tuple[TableSchema, str]] = {}
        self._failures: list[tuple[KafkaError, str, bytes | None]] = []
        self._last_error: KafkaError | None = None
        self._resume: Resume | None = None

    def resume_from(self, position: dict[str, Any] | None) -> None:
        """The runtime replays from ``position`` (its checkpoint; None: from the start).

        In transactional mode the changes of that replay already committed to Kafka by a
        previous writer are skipped (see :mod:`.resume`), so read_committed consumers never
        see a change twice. Called once, before the first ``write``.
        """
        if self.config.transactional:
            self._resume = Resume(self._client_conf(), position, min(self._timeout, 30.0))

    def bind_source(self, info: SourceInfo) -> None:
        """Which source the events come from (the envelope's ``source`` block).

        Without it the connector is inferred from the position shape (``lsn`` → postgresql).
        """
        self._serializer = Serializer(
            schemas=self.config.json_schema_enable, name=self.name, source=info
        )

    def _client_conf(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.config.bootstrap,
            "client.id": f"tideflow-{self.name}",
            "error_cb": self._on_error,
            **self.config.client_settings(),
        }

    def open(self) -> None:
        admin = AdminClient(self._client_conf())
        self._topics = Topics(
            admin,
            partitions=self.config.partitions,
            replication=self.config.replication_factor,
            timeout=min(self._timeout, 30.0),
            unreachable_hint=self._unreachable_hint(),
            denied_hint=self._denied_hint(),
        )
        self._producer = self._new_producer()

    def _new_producer(self) -> Producer:
        conf = {
            **self._client_conf(),
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": self.config.compression,
            "partitioner": "murmur2_random",
            # write() flushes at the end of every batch, which sends at once whatever linger
            # is holding; a longer linger only fills the requests sent while producing.
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "message.timeout.ms": self.config.delivery_timeout_ms,
            "queue.buffering.max.messages": 500_000,
            # _on_delivery only records failures: a Python callback per acknowledged message
            # cost ~1 µs of GIL time each. flush() still waits for every message either way.
            "delivery.report.only.error": True,
            # Set once here rather than per produce() call (~0.3 µs a message).
            "on_delivery": self._on_delivery,
        }
        if self.config.transactional:
            conf["transactional.id"] = transactional_id(self.name)
            conf["transaction.timeout.ms"] = max(60_000, self.config.delivery_timeout_ms)
        producer = Producer(conf)
        if self.config.transactional:
            try:
                # Fences any previous producer of this destination and aborts its open
                # transaction, so a half-written batch of a crashed writer never commits.
                producer.init_transactions(self._timeout)
            except KafkaException as exc:
                raise self._classify(exc) from None
        return producer

    def _on_error(self, err: KafkaError) -> None:
        # Global client errors (brokers down, authentication): remembered to explain failures.
        self._last_error = err

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failures.append((err, msg.topic() or "", msg.key()))

    def _topic(self, table: TableSchema) -> str:
        cached = self._topic_cache.get(id(table))
        if cached is not None and cached[0] is table:
            return cached[1]
        name = topic_name(table, self.config.topic_prefix, self.config.topic_suffix, self._mapping)
        self._topic_cache[id(table)] = (table, name)
        return name

    def _runs(self, events: list[ChangeEvent]) -> list[Run]:
        """``events`` cut into runs of one table, each with its topic (batches come in runs)."""
        return [(self._topic(table), list(group)) for table, group in groupby(events, _TABLE)]

    def write(self, batch: Batch) -> None:
        """Produce every event (and tombstones), then wait for every acknowledgement.

        Raises :class:`PoisonRecord` for messages larger than the broker accepts,
        :class:`TerminalError` for authorization or topic failures, :class:`Fenced` when
        another writer took over the transactional id, :class:`TransientError` otherwise.
        """
        if batch.chunk is not None:
            if self._write_chunk(batch.chunk):
                return
            batch = Batch(batch.chunk.events(), batch.position, batch.last_commit_ts_ms)
        if not batch.events:
            return
        if self._topics is None:
            self.open()
        assert self._topics is not None
        runs = self._runs(batch.events)
        self._topics.ensure({topic for topic, _ in runs})
        caught_up: set[str] = set()
        if self._resume is not None:
            plan, caught_up = self._unwritten(self._resume, _pairs(runs))
            if not plan:
                return
            runs = [(t, [e for e, _ in group]) for t, group in groupby(plan, _TOPIC)]
        producer = self._producer or self._new_producer()
        self._producer = producer
        self._failures.clear()
        try:
            self._produce_all(producer, runs, batch.position)
        except (KafkaException, TideflowError, _Oversize) as exc:
            self._discard(producer)
            raise self._classify(exc, _pairs(runs)) from None
        if self._failures:
            self._discard(producer)
            raise self._classify(None, _pairs(runs))
        if self._resume is not None:
            for topic in caught_up:
                self._resume.caught_up(topic)

    def _write_chunk(self, chunk: SnapshotChunk) -> bool:
        """Produce a snapshot chunk rendered from its COPY text (:mod:`.chunks`) and wait for
        every acknowledgement, as :meth:`write` does; False (nothing written) when the chunk
        must go as events: in transactional mode (each batch a transaction, resume looks at
        each event) and for chunks that do not describe their fields (``SnapshotChunk.fields``).

        invariant 1: returns only once the broker acknowledged every row, so the runtime
        checkpoints (and the snapshot records progress) after that."""
        if self.config.transactional:
            return False
        if self._topics is None:
            self.open()
        assert self._topics is not None
        topic = self._topic(chunk.table)
        ts_ms = int(time.time() * 1000)
        rendered = chunks.render(self._serializer, chunk, topic, ts_ms)
        if rendered is None:
            return False
        self._topics.ensure({topic})
        keys, values = rendered
        producer = self._producer or self._new_producer()
        self._producer = producer
        self._failures.clear()
        produce = producer.produce
        try:
            for start in range(0, len(values), _POLL_EVERY):
                for i in range(start, min(start + _POLL_EVERY, len(values))):
                    try:
                        produce(topic, values[i], keys[i])
                    except (BufferError, KafkaException):
                        self._send(producer, chunks.event(chunk, i), topic, keys[i], values[i])
                producer.poll(0)
            remaining = producer.flush(self._timeout)
            if remaining:
                raise TransientError(
                    f"{remaining} messages were not acknowledged by Kafka within "
                    f"{self._timeout:.0f}s{self._reason()}{self._unreachable_hint()}"
                )
        except (KafkaException, TideflowError, _Oversize) as exc:
            self._discard(producer)
            raise self._classify(exc, [(e, topic) for e in chunk.events()]) from None
        if self._failures:
            self._discard(producer)
            raise self._classify(None, [(e, topic) for e in chunk.events()])
        return True

    def _unwritten(
        self, resume: Resume, plan: list[tuple[ChangeEvent, str]]
    ) -> tuple[list[tuple[ChangeEvent, str]], set[str]]:
        """``plan`` without the changes a previous writer committed, and the topics whose
        replay reached new changes (applied once this batch is committed)."""
        out: list[tuple[ChangeEvent, str]] = []
        caught_up: set[str] = set()
        skipped = 0
        for event, topic in plan:
            if topic not in caught_up and resume.active(topic):
                written = resume.written(topic)
                if resume.active(topic):
                    identity = event_identity(event, self._serializer.key(event, topic))
                    if identity in written:
                        skipped += 1
                        continue
                    caught_up.add(topic)
            out.append((event, topic))
        if skipped:
            log.info(
                "kafka destination %s: skipped %d changes already committed before a restart",
                self.name,
                skipped,
            )
        return out, caught_up

    def _produce_all(
        self,
        producer: Producer,
        runs: list[Run],
        position: dict[str, Any] | None,
    ) -> None:
        ser = self._serializer
        produce = producer.produce
        tombstones = self.config.tombstones_on_delete
        ts_ms = int(time.time() * 1000)  # the envelopes' processing time, once per batch
        headers: list[tuple[str, str | bytes | None]] | None = None
        if self.config.transactional:
            headers = [(HEADER, position_header(position))]
            producer.begin_transaction()
        plain = ser.plain()
        for topic, events in runs:
            # Keys and values of a whole run first: a loop each, without a call per message.
            keys = ser.keys(events, topic)
            if plain is not None:
                values = plain.dumps_many(events, ts_ms)
            else:
                values = [ser.value(e, topic, ts_ms) for e in events]
            deletes = tombstones and any(e.op is _DELETE for e in events)
            for start in range(0, len(events), _POLL_EVERY):
                end = start + _POLL_EVERY
                chunk = zip(events[start:end], keys[start:end], values[start:end], strict=True)
                for event, key, value in chunk:
                    try:
                        if headers is None:
                            produce(topic, value, key)
                        else:
                            produce(topic, value, key, headers=headers)
                    except (BufferError, KafkaException):
                        self._send(producer, event, topic, key, value, headers)
                    if deletes and event.op is _DELETE and key is not None:
                        self._send(producer, event, topic, key, None, headers)
                # Serve delivery reports so the local queue drains while producing.
                producer.poll(0)
        if self.config.transactional:
            # Flushes, checks every delivery and commits; raises if any message failed.
            producer.commit_transaction(self._timeout)
            return
        remaining = producer.flush(self._timeout)
        if remaining:
            raise TransientError(
                f"{remaining} messages were not acknowledged by Kafka within "
                f"{self._timeout:.0f}s{self._reason()}{self._unreachable_hint()}"
            )

    def _send(
        self,
        producer: Producer,
        event: ChangeEvent,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        """produce() with the slow cases: a full local queue, a message the client refuses."""
        while True:
            try:
                if headers is None:
                    producer.produce(topic, value, key)
                else:
                    producer.produce(topic, value, key, headers=headers)
                return
            except BufferError:
                # The local queue is full: serve delivery reports until there is room.
                producer.poll(0.1)
            except KafkaException as exc:
                err = kafka_error(exc)
                if err is not None and err.code() in _OVERSIZE:
                    size = len(value or b"") + len(key or b"")
                    raise _Oversize(event, f"message of {size} bytes is too large") from None
                raise

    def _discard(self, producer: Producer) -> None:
        """Drop a producer after a failed batch so the next batch starts clean."""
        self._producer = None
        try:
            producer.purge()
            if self.config.transactional:
                producer.abort_transaction(5)
        except KafkaException:
            # Best effort: the next producer's init_transactions aborts it anyway.
            pass
        producer.flush(0)

    def _reason(self) -> str:
        err = self._last_error
        return f" (last client error: {err.str()})" if err is not None else ""

    def _unreachable_hint(self) -> str:
        return (
            f"; check that the Kafka brokers at {self.config.bootstrap} are running and "
            "reachable from the worker (kafka.sink.bootstrap)"
        )

    def _denied_hint(self) -> str:
        sasl = self.config.security_protocol.startswith("SASL")
        user = self.config.sasl_username if sasl else None
        who = f"user '{user}'" if user else "this client"
        return (
            f"; grant {who} WRITE (and CREATE, unless the topics already exist) on the "
            "destination's topics with a Kafka ACL, or change topic.prefix / topic.mapping"
        )

    def _classify(
        self,
        exc: BaseException | None,
        plan: list[tuple[ChangeEvent, str]] | None = None,
    ) -> TideflowError:
        if isinstance(exc, _Oversize):
            return PoisonRecord(_letters(plan or [], exc.event, str(exc)))
        errors = [e for e, _, _ in self._failures]
        err = kafka_error(exc) if exc is not None else None
        if err is not None:
            errors.insert(0, err)
        oversize = [(t, k) for e, t, k in self._failures if e.code() in _OVERSIZE]
        if oversize and plan:
            return PoisonRecord(_oversize_letters(plan, oversize, self._serializer))
        for e in errors:
            if e.code() in _FENCED:
                return Fenced(
                    f"another writer took over Kafka transactional id "
                    f"'{transactional_id(self.name)}': {e.str()}"
                )
            if e.code() in _DENIED:
                topics = sorted({t for _, t in plan or []})
                return TerminalError(
                    f"Kafka refused the write to {', '.join(topics) or 'the topics'}: "
                    f"{e.str()}{self._denied_hint()}",
                    code="kafka_denied",
                )
        if isinstance(exc, TideflowError):
            return exc
        detail = errors[0].str() if errors else str(exc)
        return TransientError(
            f"Kafka write failed: {detail}{self._reason()}{self._unreachable_hint()}"
        )

    def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            producer.flush(min(self._timeout, 10))
        except Exception:  # close must not raise (contract)
            log.warning("kafka destination %s: flush on close failed", self.name, exc_info=True)


def _pairs(runs: list[Run]) -> list[tuple[ChangeEvent, str]]:
    """(event, topic) for every event, in batch order: what the slow paths look at."""
    return [(event, topic) for topic, events in runs for event in events]


def _letters(
    plan: list[tuple[ChangeEvent, str]], event: ChangeEvent, error: str
) -> list[DeadLetter]:
    """Every event of ``event``'s key in the batch (the PoisonRecord contract)."""
    key = event.key()
    same = [e for e, _ in plan if e.table is event.table and e.key() == key]
    return [DeadLetter(e, error) for e in (same or [event])]


def _oversize_letters(
    plan: list[tuple[ChangeEvent, str]],
    failed: list[tuple[str, bytes | None]],
    ser: Serializer,
) -> list[DeadLetter]:
    refused = set(failed)
    letters = [
        DeadLetter(e, "message is larger than the broker accepts (message.max.bytes)")
        for e, topic in plan
        if (topic, ser.key(e, topic)) in refused
    ]
    if not letters:
        letters = [DeadLetter(plan[0][0], "message is larger than the broker accepts")]
    return letters
