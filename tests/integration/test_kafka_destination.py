"""Kafka destination against the real broker of scripts/services/kafka.sh."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)
from confluent_kafka.cimpl import NewTopic

from tests.support import kafka
from tideflow.connectors.config import validate
from tideflow.connectors.destinations.kafka.config import KafkaDestinationConfig
from tideflow.connectors.destinations.kafka.destination import KafkaDestination
from tideflow.engine.errors import PoisonRecord
from tideflow.errors import Invalid, TerminalError, TransientError
from tideflow.events import Batch, ChangeEvent, Column, Op, TableSchema

pytestmark = pytest.mark.integration
CASES = Path(__file__).resolve().parents[1] / "cases" / "kafka"
PREFIX = "tfk-dest-"


@pytest.fixture(scope="module", autouse=True)
def _broker() -> Iterator[None]:
    kafka.broker()
    yield
    kafka.delete_topics_with_prefix(PREFIX)


def make(name: str = "dest", **config: Any) -> KafkaDestination:
    cfg = KafkaDestinationConfig.model_validate(kafka.dest_config(**config))
    dest = KafkaDestination(cfg, name=name)
    dest.open()
    return dest


def _normalise(doc: Any) -> Any:
    """Blank what changes from run to run: processing time and the Tideflow version."""
    env = doc["payload"] if isinstance(doc, dict) and "payload" in doc else doc
    if isinstance(env, dict):
        env["ts_ms"] = 0
        env["source"]["version"] = "<version>"
    return doc


def _golden(name: str, actual: Any) -> None:
    path = CASES / name
    text = json.dumps(actual, indent=2, ensure_ascii=False, sort_keys=False) + "\n"
    if os.environ.get("TIDEFLOW_UPDATE_GOLDEN") or not path.exists():
        path.write_text(text)
        if not os.environ.get("TIDEFLOW_UPDATE_GOLDEN"):
            pytest.fail(f"golden file {path} created; review it and rerun")
    assert json.loads(path.read_text()) == actual, f"differs from {path}"


@pytest.mark.parametrize("schemas", [False, True], ids=["plain", "schemas"])
def test_every_op_and_kind_matches_golden_envelopes(schemas: bool) -> None:
    prefix = kafka.unique(PREFIX + "gold") + "."
    dest = make("golden", **{"topic.prefix": prefix, "json.schema.enable": schemas})
    dest.write(Batch(events=kafka.every_op_events()))
    dest.close()
    # 6 events + 1 tombstone after the delete.
    messages = kafka.read_topic(f"{prefix}public.every_kind", count=7, settle=1.0)
    assert len(messages) == 7

    # Schema names embed the topic name, whose prefix is unique per run.
    def load(data: bytes) -> Any:
        return orjson.loads(data.replace(prefix.encode(), b"<prefix>."))

    docs = [
        {
            "key": None if k is None else load(k),
            "value": None if v is None else _normalise(load(v)),
        }
        for k, v in messages
    ]
    assert docs[5]["value"] is None and docs[5]["key"] == docs[4]["key"]
    _golden(f"envelopes_{'schemas' if schemas else 'plain'}.json", docs)


def test_kcat_reads_the_topic() -> None:
    prefix = kafka.unique(PREFIX + "kcat") + "."
    dest = make(**{"topic.prefix": prefix})
    dest.write(Batch(events=kafka.every_op_events()))
    dest.close()
    out = subprocess.run(
        [
            "kcat",
            "-C",
            "-b",
            kafka.BOOTSTRAP,
            "-t",
            f"{prefix}public.every_kind",
            "-e",
            "-q",
            "-f",
            "%s\\n",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout.decode()
    ops = [json.loads(line)["op"] for line in out.splitlines() if line.strip()]
    assert ops == ["r", "c", "u", "u", "d", "t"]


def test_topic_naming_mapping_and_partitions() -> None:
    prefix = kafka.unique(PREFIX + "map")
    table = TableSchema("s p", "o/rders", (Column("id", "int", "int", False, True),), ("id",))
    other = TableSchema("public", "mapped", (Column("id", "int", "int", False, True),), ("id",))
    dest = make(
        **{
            "topic.prefix": prefix + ".",
            "topic.suffix": ".v1",
            "topic.partitions": 3,
            "topic.mapping": f"public.mapped={prefix}-custom",
        }
    )
    events = [
        ChangeEvent(Op.CREATE, t, None, {"id": i}, {"lsn": i}, 0)
        for t in (table, other)
        for i in range(5)
    ]
    dest.write(Batch(events=events))
    dest.close()
    topics = kafka.admin().list_topics(timeout=10).topics
    assert len(topics[f"{prefix}.s_p.o_rders.v1"].partitions) == 3
    assert f"{prefix}-custom" in topics


def test_avro_is_refused_with_a_clear_config_error() -> None:
    with pytest.raises(Invalid, match=r"destination\.format.*schema registry"):
        validate(KafkaDestinationConfig, kafka.dest_config(**{"destination.format": "avro"}))
    with pytest.raises(Invalid, match=r"kafka\.sink\.bootstrap"):
        validate(KafkaDestinationConfig, {})


def _one(table: TableSchema, i: int, **row: Any) -> ChangeEvent:
    return ChangeEvent(Op.CREATE, table, None, {"id": i, **row}, {"lsn": i}, 0)


TEXT_TABLE = TableSchema(
    "public",
    "blobs",
    (Column("id", "int4", "int", False, True), Column("body", "text", "text")),
    ("id",),
)


def test_oversize_message_is_a_poison_record() -> None:
    prefix = kafka.unique(PREFIX + "big") + "."
    dest = make(**{"topic.prefix": prefix})
    # Larger than the client's and the broker's message.max.bytes: refused when produced.
    with pytest.raises(PoisonRecord) as info:
        dest.write(Batch(events=[_one(TEXT_TABLE, 1), _one(TEXT_TABLE, 2, body="x" * 2_000_000)]))
    assert [letter.event.key() for letter in info.value.letters] == [(2,)]
    # Under the client limit but over the topic's max.message.bytes: refused by the broker.
    prefix = kafka.unique(PREFIX + "big2") + "."
    topic = f"{prefix}public.blobs"
    small = NewTopic(topic, 1, 1, config={"max.message.bytes": "2000"})
    admin = kafka.admin()
    admin.create_topics([small])[topic].result()
    dest2 = make(**{"topic.prefix": prefix})
    with pytest.raises(PoisonRecord, match="larger than the broker accepts") as info:
        dest2.write(
            Batch(events=[_one(TEXT_TABLE, 3, body=os.urandom(5000).hex()), _one(TEXT_TABLE, 4)])
        )
    # The broker refuses whole record batches: the letters are the events of the refused
    # record batch, which includes the oversize one.
    assert (3,) in [letter.event.key() for letter in info.value.letters]
    # The destination recovers: the next batch goes through.
    dest2.write(Batch(events=[_one(TEXT_TABLE, 5)]))
    dest.close()
    dest2.close()


def test_unreachable_broker_is_a_bounded_transient_error() -> None:
    dest = make(**{"kafka.sink.bootstrap": "127.0.0.1:1", "delivery.timeout.ms": 3000})
    started = time.monotonic()
    with pytest.raises(TransientError):
        dest.write(Batch(events=[_one(TEXT_TABLE, 1)]))
    assert time.monotonic() - started < 30
    dest.close()


def test_write_fails_transiently_while_the_broker_is_down_and_recovers() -> None:
    prefix = kafka.unique(PREFIX + "down") + "."
    dest = make(**{"topic.prefix": prefix, "delivery.timeout.ms": 4000})
    dest.write(Batch(events=[_one(TEXT_TABLE, 1)]))
    kafka.broker("stop")
    try:
        started = time.monotonic()
        with pytest.raises(TransientError, match="Kafka"):
            dest.write(Batch(events=[_one(TEXT_TABLE, 2)]))
        assert time.monotonic() - started < 30
    finally:
        kafka.broker("start")
    # Same instance, broker back: the runtime's retry succeeds.
    kafka.wait_until("a write after restart", lambda: _try_write(dest, 3), timeout=60)
    dest.close()
    values = [
        orjson.loads(v or b"null")
        for _, v in kafka.read_topic(f"{prefix}public.blobs", count=2, settle=1.0)
    ]
    assert [v["after"]["id"] for v in values] == [1, 3]


def _try_write(dest: KafkaDestination, i: int) -> bool:
    try:
        dest.write(Batch(events=[_one(TEXT_TABLE, i)]))
        return True
    except TransientError:
        return False


def test_topic_authorization_failure_is_terminal() -> None:
    """A real ACL denial for SASL user alice on the broker's SASL_PLAINTEXT listener."""
    prefix = kafka.unique(PREFIX + "denied")
    acl = AclBinding(
        ResourceType.TOPIC,
        prefix,
        ResourcePatternType.PREFIXED,
        "User:alice",
        "*",
        AclOperation.ALL,
        AclPermissionType.DENY,
    )
    admin = kafka.admin()
    for future in admin.create_acls([acl]).values():
        future.result()
    try:
        dest = make(
            **{
                "kafka.sink.bootstrap": kafka.SASL_BOOTSTRAP,
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.username": "alice",
                "sasl.password": "alice-secret",
                "topic.prefix": prefix + ".",
            }
        )
        with pytest.raises(TerminalError, match=r"(?i)authoriz"):
            dest.write(Batch(events=[_one(TEXT_TABLE, 1)]))
        dest.close()
        # The same user may write elsewhere: the denial is the ACL, not the connection.
        ok = make(
            **{
                "kafka.sink.bootstrap": kafka.SASL_BOOTSTRAP,
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.username": "alice",
                "sasl.password": "alice-secret",
                "topic.prefix": kafka.unique(PREFIX + "allowed") + ".",
            }
        )
        ok.write(Batch(events=[_one(TEXT_TABLE, 1)]))
        ok.close()
    finally:
        flt = AclBindingFilter(
            ResourceType.TOPIC,
            prefix,
            ResourcePatternType.PREFIXED,
            "User:alice",
            "*",
            AclOperation.ALL,
            AclPermissionType.DENY,
        )
        for future in admin.delete_acls([flt]).values():
            future.result()


CRASHER = """
import sys, time
from confluent_kafka import Producer
from tideflow.connectors.destinations.kafka import destination as mod
from tideflow.connectors.destinations.kafka.config import KafkaDestinationConfig
from tests.support import kafka
from tideflow.events import Batch

class HangingProducer(Producer):
    def commit_transaction(self, *args):
        # Every message of the transaction is written, then the process dies uncommitted.
        self.flush(30)
        print("READY", flush=True)
        time.sleep(600)

mod.Producer = HangingProducer
cfg = KafkaDestinationConfig.model_validate(kafka.dest_config(**{
    "topic.prefix": sys.argv[1], "transactional": True}))
dest = mod.KafkaDestination(cfg, name=sys.argv[2])
dest.open()
events = kafka.every_op_events()
dest.write(Batch(events=events[:2]))
"""


def test_transactional_batch_killed_midway_is_invisible_to_read_committed() -> None:
    prefix = kafka.unique(PREFIX + "txn") + "."
    name = kafka.unique("txn")
    topic = f"{prefix}public.every_kind"
    events = kafka.every_op_events()
    first = make(name, **{"topic.prefix": prefix, "transactional": True})
    first.write(Batch(events=events[:1]))
    first.close()
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHER, prefix, name],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"READY"
    finally:
        proc.kill()  # SIGKILL: no abort, no cleanup
        proc.wait()
    # The half batch is in the log (read_uncommitted sees it) but not committed.
    uncommitted = kafka.read_topic(topic, count=3, isolation="read_uncommitted")
    assert len(uncommitted) == 3
    committed = kafka.read_topic(topic, count=1, settle=2.0)
    assert len(committed) == 1
    # A restarted writer fences the dead one (aborting its transaction) and writes the batch.
    again = make(name, **{"topic.prefix": prefix, "transactional": True})
    again.write(Batch(events=events[1:3]))
    again.close()
    ops = [
        orjson.loads(v or b"null")["op"] for _, v in kafka.read_topic(topic, count=3, settle=2.0)
    ]
    assert ops == ["r", "c", "u"]
