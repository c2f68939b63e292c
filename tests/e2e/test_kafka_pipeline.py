"""End to end through the live server: Postgres → Kafka, with kill -9, broker outages and ACLs.

Correctness is judged by contents: the topic's envelopes, replayed by key in offset order,
must rebuild the source table exactly (the rebuilt rows are loaded into a Postgres table of
the same shape and both are compared with the workload checksum). Duplicates are checked
against what docs/connectors/kafka.md promises for each delivery mode.
"""

from __future__ import annotations

import base64
import os
import random
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import psycopg
import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from tests.support import api, kafka, pg, workload
from tests.support.server import Server, wait_until

pytestmark = pytest.mark.integration

CHAOS_ROUNDS = int(os.environ.get("TIDEFLOW_CHAOS_ROUNDS", "2"))
PREFIX = "tfk-pipe-"


@pytest.fixture(scope="module", autouse=True)
def _topics() -> Iterator[None]:
    yield
    kafka.delete_topics_with_prefix(PREFIX)


@pytest.fixture
def src() -> Iterator[str]:
    with pg.temp_database("ksrc") as name:
        workload.create_schema(name)
        yield name


def start_pipeline(server: Server, src: str, config: dict[str, Any]) -> dict[str, Any]:
    with server.client() as c:
        source = api.create_pg_source(c, api.pg_source_config(src))
        body = {"name": api.unique("kafka"), "connector": "kafka", "config": config}
        dest = api.create(c, "/destinations", body)
        pipe = api.create_pipeline(c, source, dest)
        api.wait_status(c, "pipelines", pipe["id"], "Active", timeout=120)
        api.wait_status(c, "sources", source["id"], "Active", timeout=120)
    return pipe


def pipeline_status(client: httpx.Client, pipe_id: str) -> tuple[str, str]:
    r = client.get(f"/pipelines/{pipe_id}")
    assert r.status_code == 200, r.text
    row = r.json()["result"][0]
    return str(row["connector_status"]), str(row.get("connector_status_message") or "")


@dataclass(frozen=True)
class Record:
    offset: int
    key: bytes | None
    value: dict[str, Any] | None  # None: a tombstone

    @property
    def identity(self) -> tuple[Any, ...]:
        """The source change this message carries (one WAL record of one transaction)."""
        assert self.value is not None
        src = self.value["source"]
        return (src["txId"], src["lsn"], self.value["op"], self.key)


def read_all(topic: str, isolation: str = "read_committed") -> list[Record]:
    """Every message of partition 0 up to the end (the last stable offset when committed)."""
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.BOOTSTRAP,
            "group.id": kafka.unique("e2e-reader"),
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": isolation,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: list[Record] = []
    try:
        while True:
            msg = consumer.poll(10)
            if msg is None:
                raise AssertionError(f"no message nor end of partition from {topic} in 10 s")
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    return out
                if err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    return out
                raise AssertionError(f"consume failed: {err}")
            value = msg.value()
            out.append(Record(msg.offset(), msg.key(), orjson.loads(value) if value else None))
    finally:
        consumer.close()


def fold(records: list[Record]) -> dict[int, dict[str, Any]]:
    """Replay the envelopes by key, in offset order, into the final table."""
    rows: dict[int, dict[str, Any]] = {}
    for rec in records:
        env = rec.value
        if env is None:
            continue
        op = env["op"]
        if op == "d":
            rows.pop(int(env["before"]["id"]), None)
        elif op in ("c", "r", "u"):
            after = dict(env["after"])
            unchanged = env.get("__unchanged")
            if unchanged:  # TOASTed values the source did not send: keep the known ones
                known = rows.get(int(after["id"]), {})
                after.update({k: known.get(k) for k in unchanged})
            rows[int(after["id"])] = after
        elif op == "t":
            rows.clear()
    return rows


def _as_postgres_input(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for col in ("j", "jb"):  # json values travel as their text
        if isinstance(out.get(col), str):
            out[col] = orjson.loads(out[col])
    if out.get("by") is not None:
        out["by"] = "\\x" + base64.b64decode(out["by"]).hex()
    return out


def folded_checksum(rows: dict[int, dict[str, Any]], dst: str) -> tuple[int, str]:
    """Load the folded rows into ``dst`` (same table definition) and checksum them."""
    data = orjson.dumps([_as_postgres_input(r) for r in rows.values()]).decode()
    with psycopg.connect(pg.dsn(dst)) as conn:
        conn.execute("TRUNCATE public.items")
        conn.execute(
            "INSERT INTO public.items "
            "SELECT * FROM jsonb_populate_recordset(NULL::public.items, %s)",
            (data,),
        )
    return checksum(dst)


def checksum(dbname: str) -> tuple[int, str]:
    """(rows, md5 of every column of every row in key order) of ``public.items``.

    The row alias must not be the name of a column: ``items`` has a column ``t``, so
    ``t::text`` over a subquery aliased ``t`` would checksum that one column only.
    """
    with psycopg.connect(pg.dsn(dbname)) as conn:
        row = conn.execute(
            "SELECT count(*), coalesce(md5(string_agg(item_row::text, '|' ORDER BY id)), '') "
            f"FROM (SELECT {workload.COLUMNS} FROM public.items) item_row"
        ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def wait_topic_equals_source(
    topic: str, src: str, isolation: str = "read_committed", timeout: float = 300
) -> list[Record]:
    expected = checksum(src)
    with pg.temp_database("kfold") as dst:
        workload.create_schema(dst)
        last: list[list[Record]] = [[]]

        def same() -> bool:
            last[0] = read_all(topic, isolation)
            return folded_checksum(fold(last[0]), dst) == expected

        wait_until(same, timeout, interval=2.0, what=f"topic {topic} to fold to {expected}")
        return last[0]


def replays(records: list[Record]) -> int:
    """How many times the stream goes back to re-deliver changes it already holds.

    Each message is mapped to the index its change first appeared at; a stream without
    duplicates counts 0, and each replay of a run of already-written changes counts 1.
    """
    first: dict[tuple[Any, ...], int] = {}
    jumps, previous = 0, -1
    for rec in records:
        if rec.value is None:
            continue
        ordinal = first.setdefault(rec.identity, len(first))
        if ordinal != previous + 1 and ordinal <= previous:
            jumps += 1
        previous = ordinal
    return jumps


def duplicates(records: list[Record]) -> int:
    ids = [r.identity for r in records if r.value is not None]
    return len(ids) - len(set(ids))


@pytest.mark.parametrize("transactional", [False, True], ids=["idempotent", "transactional"])
def test_survives_kill9_during_load(src: str, engine_server: Server, transactional: bool) -> None:
    prefix = kafka.unique(PREFIX + "kill") + "."
    topic = f"{prefix}public.items"
    start_pipeline(
        engine_server,
        src,
        kafka.dest_config(**{"topic.prefix": prefix, "transactional": transactional}),
    )
    load = threading.Thread(
        target=workload.run_pgbench, args=(src,), kwargs={"seconds": 6 * CHAOS_ROUNDS + 4}
    )
    load.start()
    for _ in range(CHAOS_ROUNDS):
        threading.Event().wait(random.uniform(1.0, 4.0))
        engine_server.kill9()
        engine_server.start(timeout=120)
    load.join()
    workload.touch_toast_rows(src)  # unchanged TOAST values must fold from earlier images

    committed = wait_topic_equals_source(topic, src)
    print(  # shown with -s: what the run exercised
        f"{len(committed)} messages, {duplicates(committed)} duplicates, "
        f"{replays(committed)} replays, source rows {checksum(src)[0]}"
    )
    if transactional:
        # read_committed never sees a change twice, nor part of a batch.
        assert duplicates(committed) == 0
        everything = read_all(topic, "read_uncommitted")
        assert {r.identity for r in everything if r.value is not None} == {
            r.identity for r in committed if r.value is not None
        }, "a change written in an aborted transaction is missing from the committed stream"
        runs: list[int] = []
        for rec in committed:
            if rec.value is not None and (not runs or runs[-1] != rec.value["source"]["txId"]):
                runs.append(rec.value["source"]["txId"])
        assert len(runs) == len(set(runs)), "a source transaction is split in the topic"
    else:
        # At least once: a restart re-writes the changes after the last checkpoint, in order.
        assert replays(committed) <= CHAOS_ROUNDS


def test_broker_outage_reports_retrying_and_recovers(src: str, engine_server: Server) -> None:
    proxy = kafka.BrokerProxy().start()
    prefix = kafka.unique(PREFIX + "outage") + "."
    topic = f"{prefix}public.items"
    bootstrap = f"127.0.0.1:{proxy.port}"
    try:
        pipe = start_pipeline(
            engine_server,
            src,
            kafka.dest_config(
                **{
                    "kafka.sink.bootstrap": bootstrap,
                    "topic.prefix": prefix,
                    "delivery.timeout.ms": 5000,
                }
            ),
        )
        workload.insert_range(src, 1, 2_000)
        wait_topic_equals_source(topic, src)

        proxy.cut()
        workload.run_pgbench(src, seconds=4)
        seen: list[str] = []
        with engine_server.client() as c:

            def retried_twice() -> bool:
                state, message = pipeline_status(c, pipe["id"])
                if message and message not in seen:
                    seen.append(message)
                return state == "Active" and "(attempt 2)" in message

            wait_until(retried_twice, 180, interval=0.5, what="the pipeline to retry twice")
        delays = {
            int(m.group(2)): float(m.group(1))
            for m in (re.search(r"retrying in ([\d.]+)s \(attempt (\d+)\)", s) for s in seen)
            if m
        }
        assert delays.get(2, 0) > delays.get(1, 99), seen  # the backoff grows
        assert "Kafka" in seen[-1] and bootstrap in seen[-1] and "reachable" in seen[-1], seen

        proxy.restore()
        records = wait_topic_equals_source(topic, src)
        assert replays(records) <= len(seen)  # only failed batches were written again
        with engine_server.client() as c:
            wait_until(
                lambda: pipeline_status(c, pipe["id"]) == ("Active", ""),
                60,
                what="the retrying message to clear",
            )
    finally:
        proxy.stop()


def test_topic_authorization_failure_breaks_the_pipeline(src: str, engine_server: Server) -> None:
    prefix = kafka.unique(PREFIX + "denied")
    acl = (
        ResourceType.TOPIC,
        prefix,
        ResourcePatternType.PREFIXED,
        "User:alice",
        "*",
        AclOperation.ALL,
        AclPermissionType.DENY,
    )
    admin = kafka.admin()
    for future in admin.create_acls([AclBinding(*acl)]).values():
        future.result()
    try:
        pipe = start_pipeline(
            engine_server,
            src,
            kafka.dest_config(
                **{
                    "kafka.sink.bootstrap": kafka.SASL_BOOTSTRAP,
                    "security.protocol": "SASL_PLAINTEXT",
                    "sasl.username": "alice",
                    "sasl.password": "alice-secret",
                    "topic.prefix": prefix + ".",
                }
            ),
        )
        workload.insert_range(src, 1, 10)
        with engine_server.client() as c:
            wait_until(
                lambda: pipeline_status(c, pipe["id"])[0] == "Broken",
                120,
                what="the pipeline to break on the ACL denial",
            )
            message = pipeline_status(c, pipe["id"])[1]
        assert "authoriz" in message.lower(), message
        assert f"{prefix}.public.items" in message, message
        assert "user 'alice'" in message and "ACL" in message, message
    finally:
        for future in admin.delete_acls([AclBindingFilter(*acl)]).values():
            future.result()
