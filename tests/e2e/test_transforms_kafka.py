"""Transforms end to end into the Kafka destination (real broker), through the live server.

Judged by the messages in each topic — keys and Debezium envelopes — never by log lines.

Topic naming of routed and fanned-out records: a topic function's name ``schema.table`` (or
``table``, meaning the source table's schema) takes the place of the source table, so the
Kafka topic is ``topic.mapping[schema.table]`` if mapped, else
``<topic.prefix><schema>.<table><topic.suffix>`` — exactly as for an untransformed table.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.e2e.test_transforms import transform
from tests.support import api, kafka, pg
from tests.support.server import Server, wait_until

pytestmark = pytest.mark.integration
PREFIX = "tf-tr-"
Message = tuple[Any, Any]  # (key, value) decoded from JSON; value None for a tombstone

JS_FILTER = """function _streamkap_transform(valueObject, keyObject, topic, timestamp) {
  if (valueObject.id % 5 === 0) return null;
  if (valueObject.t !== undefined) valueObject.t_len = valueObject.t.length;
  return valueObject;
}"""
PY_FILTER = """def _streamkap_transform(valueObject, keyObject, topic, timestamp):
    if valueObject["id"] % 11 == 0:
        return None
    valueObject["vc"] = valueObject["vc"].upper()
    return valueObject

def _streamkap_transform_key(valueObject, keyObject, topic, timestamp):
    return {"id": keyObject["id"], "shard": valueObject["id"] % 3}
"""
JS_ROUTER = """function _streamkap_transform_topic(valueObject, keyObject, topic, timestamp) {
  return valueObject.id % 2 === 0 ? 'items_even' : null;
}"""
PY_FAN_OUT = """def _streamkap_transform(valueObject, keyObject, topic, timestamp):
    return valueObject

def _streamkap_transform_topic(valueObject, keyObject, topic, timestamp):
    return [topic, "audit.items"] if valueObject["id"] % 3 == 0 else topic
"""
TABLE = (
    "CREATE TABLE public.items (id bigint PRIMARY KEY, t text, vc varchar(40), card text);"
    "ALTER TABLE public.items REPLICA IDENTITY FULL"
)


@pytest.fixture(scope="module", autouse=True)
def _broker() -> Iterator[None]:
    kafka.broker()
    yield
    kafka.delete_topics_with_prefix(PREFIX)


@pytest.fixture
def src() -> Iterator[str]:
    with pg.temp_database("ktsrc") as name:
        with psycopg.connect(pg.dsn(name), autocommit=True) as conn:
            conn.execute(TABLE)
        yield name


def messages(topic: str) -> list[Message]:
    """Every message of ``topic`` (one partition) up to its high watermark, decoded."""
    consumer = Consumer({"bootstrap.servers": kafka.BOOTSTRAP, "group.id": kafka.unique("reader")})
    try:
        try:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=5)
        except Exception:  # the topic does not exist yet
            return []
        consumer.assign([TopicPartition(topic, 0, 0)])
        out: list[Message] = []
        while len(out) < high:
            msg = consumer.poll(5)
            if msg is None:
                raise AssertionError(f"{topic}: {len(out)} of {high} messages readable")
            if msg.error() is not None:
                continue
            key, value = msg.key(), msg.value()
            out.append(
                (
                    None if key is None else json.loads(key),
                    None if value is None else json.loads(value),
                )
            )
        return out
    finally:
        consumer.close()


def envelope(msg: Message) -> Message:
    """(key, (op, before, after)) — the envelope's parts the transforms decide."""
    key, value = msg
    if value is None:
        return key, None
    return key, (value["op"], value["before"], value["after"])


def kafka_pipeline(
    c: httpx.Client, src: str, transforms: list[str], **dest_config: Any
) -> dict[str, Any]:
    source = api.create(
        c,
        "/sources",
        {"name": api.unique("src"), "connector": "postgresql", "config": api.pg_source_config(src)},
    )
    destination = api.create(
        c,
        "/destinations",
        {
            "name": api.unique("kdst"),
            "connector": "kafka",
            "config": kafka.dest_config(**dest_config),
        },
    )
    body = {
        "name": api.unique("pipe"),
        "snapshot_new_tables": False,
        "source": {
            "id": source["id"],
            "name": source["name"],
            "connector": "postgresql",
            "topics": [],
        },
        "destination": {"id": destination["id"], "name": destination["name"], "connector": "kafka"},
        "transforms": [{"id": t} for t in transforms],
        "tags": [],
    }
    pipe = api.create(c, "/pipelines", body)
    api.wait_status(c, "pipelines", pipe["id"], "Active")
    api.wait_status(c, "sources", source["id"], "Active")
    return pipe


def broken_with(c: httpx.Client, pipeline_id: str, text: str) -> bool:
    r = c.get(f"/pipelines/{pipeline_id}").json()["result"][0]
    return r["connector_status"] == "Broken" and text in str(r["connector_status_message"])


def run_sql(dbname: str, *statements: str) -> None:
    with psycopg.connect(pg.dsn(dbname), autocommit=True) as conn:
        for s in statements:
            conn.execute(s)


def chain(op: str, row: dict[str, Any]) -> list[tuple[str, Message]]:
    """What the five transforms of the test make of one change: (schema.table, message)s."""
    i = row["id"]
    if i % 5 == 0 or i % 11 == 0:
        return []
    value = {**row, "t_len": len(row["t"]), "vc": row["vc"].upper(), "card": "****"}
    value["shard"] = i % 3  # a key field the value lacks is added to the row
    key = {"id": i, "shard": i % 3}
    routed = "public.items_even" if i % 2 == 0 else "public.items"
    topics = [routed, "audit.items"] if i % 3 == 0 else [routed]
    before, after = (value, None) if op == "d" else (None, value)
    out: list[tuple[str, Message]] = []
    for t in topics:
        out.append((t, (key, (op, before, after))))
        if op == "d":
            out.append((t, (key, None)))  # tombstone
    return out


def test_chain_into_kafka_routes_fans_out_drops_and_rekeys(src: str, engine_server: Server) -> None:
    prefix = kafka.unique(PREFIX + "chain") + "."
    mapped = prefix + "audit-mapped"
    with engine_server.client() as c:
        js, py = {"transforms.language": "JavaScript"}, {"transforms.language": "Python"}
        ids = [
            transform(
                c, "map_filter", js, {"language": "JavaScript", "value_transform": JS_FILTER}
            ),
            transform(c, "map_filter", py, {"language": "Python", "value_transform": PY_FILTER}),
            transform(
                c,
                "map_filter",
                {"transforms.builtin": [{"op": "mask", "fields": ["card"], "with": "****"}]},
                None,
            ),
            transform(
                c, "topic_router", js, {"language": "JavaScript", "topic_transform": JS_ROUTER}
            ),
            transform(c, "fan_out", py, {"language": "Python", "value_transform": PY_FAN_OUT}),
        ]
        kafka_pipeline(
            c,
            src,
            ids,
            **{
                "topic.prefix": prefix,
                "topic.suffix": ".cdc",
                "topic.mapping": f"audit.items={mapped}",
            },
        )
        rows = {
            i: {"id": i, "t": f"text {i}", "vc": f"vc{i}", "card": f"4111-{i:04d}"}
            for i in range(1, 41)
        }
        run_sql(
            src,
            "INSERT INTO items SELECT g, 'text ' || g, 'vc' || g, '4111-' || lpad(g::text, 4, '0') "
            "FROM generate_series(1, 40) g",
        )
        run_sql(src, "UPDATE items SET vc = 'new' || id WHERE id IN (1, 6, 10)")
        run_sql(src, "DELETE FROM items WHERE id IN (7, 9, 22)")
        changes: list[tuple[str, dict[str, Any]]] = [("c", dict(r)) for r in rows.values()]
        for i in (1, 6, 10):
            rows[i]["vc"] = f"new{i}"
            changes.append(("u", dict(rows[i])))
        changes += [("d", rows[i]) for i in (7, 9, 22)]

        want: dict[str, list[Message]] = {
            f"{prefix}public.items.cdc": [],
            f"{prefix}public.items_even.cdc": [],
            mapped: [],
        }
        names = {
            "public.items": f"{prefix}public.items.cdc",
            "public.items_even": f"{prefix}public.items_even.cdc",
            "audit.items": mapped,
        }
        for op, row in changes:
            for table, msg in chain(op, row):
                want[names[table]].append(msg)
        assert all(want.values())  # each topic gets something: the test checks routing

        def got() -> dict[str, list[Message]]:
            return {topic: [envelope(m) for m in messages(topic)] for topic in want}

        with contextlib.suppress(AssertionError):  # the comparison below shows the difference
            wait_until(lambda: got() == want, 90, interval=0.5, what="the messages per topic")
        for topic, have in got().items():
            assert have == want[topic], topic
        # Nothing arrives late in another topic either (dropped records stay dropped).
        existing = kafka.admin().list_topics(timeout=10).topics
        assert sorted(t for t in existing if t.startswith(prefix)) == sorted(want)
        assert got() == want


def test_runaway_transforms_stop_while_another_pipeline_flows(
    src: str, engine_server: Server
) -> None:
    loop = "function _streamkap_transform(v) { if (v.id == 3) { while (true) {} } return v; }"
    # 100 MB steps: the first one is over the limit, so the memory limit stops it at once.
    # Small steps also end at the memory limit, but filling 64 MB takes long enough on a
    # loaded machine for the (wall-clock) time limit to come first.
    hog = (
        "def _streamkap_transform(v, k, t, ts):\n"
        "    if v['id'] == 4:\n"
        "        a = []\n"
        "        while True:\n"
        "            a.append('x' * 10**8)\n"
        "    return v\n"
    )
    upper = "function _streamkap_transform(v) { v.vc = v.vc.toUpperCase(); return v; }"
    limits = {"transforms.limits.time.ms": 200, "transforms.limits.memory.mb": 64}
    prefixes = {name: kafka.unique(PREFIX + name) + "." for name in ("loop", "hog", "ok")}
    with engine_server.client() as c:
        looping = transform(
            c,
            "map_filter",
            {"transforms.language": "JavaScript", **limits},
            {"language": "JavaScript", "value_transform": loop},
        )
        hogging = transform(
            c,
            "map_filter",
            {"transforms.language": "Python", **limits},
            {"language": "Python", "value_transform": hog},
        )
        healthy = transform(
            c,
            "map_filter",
            {"transforms.language": "JavaScript"},
            {"language": "JavaScript", "value_transform": upper},
        )
        pipes = {
            "loop": kafka_pipeline(c, src, [looping], **{"topic.prefix": prefixes["loop"]}),
            "hog": kafka_pipeline(c, src, [hogging], **{"topic.prefix": prefixes["hog"]}),
            "ok": kafka_pipeline(c, src, [healthy], **{"topic.prefix": prefixes["ok"]}),
        }

        def values(name: str) -> list[int]:
            return [m[1]["after"]["id"] for m in messages(f"{prefixes[name]}public.items")]

        for i in range(1, 21):  # one transaction per row: the runaways hit mid-stream
            run_sql(src, f"INSERT INTO items VALUES ({i}, 'text {i}', 'vc{i}', 'c{i}')")
        # Broken with the limit's message (the worker restarts failed units after a backoff,
        # so this is read while it is Broken).
        for name, limit in (("loop", "time limit"), ("hog", "memory limit")):
            wait_until(
                lambda name=name, limit=limit: broken_with(c, pipes[name]["id"], limit),
                90,
                interval=0.2,
                what=f"pipeline {name} Broken with '{limit}'",
            )
        # The healthy pipeline keeps flowing after the others stopped.
        run_sql(
            src,
            "INSERT INTO items SELECT g, 'text ' || g, 'vc' || g, 'c' || g "
            "FROM generate_series(21, 60) g",
        )
        wait_until(
            lambda: values("ok") == list(range(1, 61)),
            90,
            interval=0.5,
            what="every row through the healthy pipeline",
        )
        ok = messages(f"{prefixes['ok']}public.items")
        assert [m[1]["after"]["vc"] for m in ok] == [f"VC{i}" for i in range(1, 61)]
        for name, guilty in (("loop", 3), ("hog", 4)):
            # halt writes nothing of the failing batch: the runaway record never leaks through
            assert set(values(name)) <= set(range(1, guilty)), values(name)
