"""An incremental snapshot of a Postgres table into Kafka through the live server: the chunks
go out rendered from their COPY text (kafka/chunks.py), and the topic ends up holding every
row once, each message the ``op=r`` envelope of the row as the source holds it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import psycopg
import pytest

from tests.support import api, kafka, pg, workload
from tests.support.server import Server, wait_until

pytestmark = pytest.mark.integration

ROWS = 25_000


@pytest.fixture
def src() -> Iterator[str]:
    with pg.temp_database("src") as db:
        workload.create_schema(db)
        workload.insert_range(db, 1, ROWS)
        yield db


def test_snapshot_to_kafka_writes_every_row_once(src: str, engine_server: Server) -> None:
    prefix = kafka.unique("tfsnapk") + "."
    topic = f"{prefix}public.items"
    try:
        with engine_server.client() as c:
            source = api.create_pg_source(c, api.pg_source_config(src, "public.items"))
            dest = api.create(
                c,
                "/destinations",
                {
                    "name": api.unique("dst"),
                    "connector": "kafka",
                    "config": kafka.dest_config(**{"topic.prefix": prefix}),
                },
            )
            pipe = api.create_pipeline(c, source, dest)
            api.wait_status(c, "pipelines", pipe["id"], "Active")
            api.wait_status(c, "sources", source["id"], "Active")
            r = c.post("/sources/snapshot", json={"source_id": source["id"]})
            assert r.status_code == 202, r.text

            def completed() -> dict[str, Any] | None:
                body: dict[str, Any] = c.get(f"/sources/{source['id']}/snapshot").json()
                statuses = {t["status"] for t in body.get("topics") or []}
                assert "failed" not in statuses, body
                return body if statuses == {"completed"} else None

            done = wait_until(completed, 300, what="snapshot completed")
            assert done["topics"][0]["rows_read"] == ROWS
            messages = kafka.read_topic(topic, count=ROWS, timeout=120, settle=2.0)
            c.delete(f"/pipelines/{pipe['id']}")
            c.delete(f"/sources/{source['id']}", params={"force": True})
    finally:
        kafka.delete_topics_with_prefix(prefix)
    docs = [(orjson.loads(k or b"null"), orjson.loads(v or b"null")) for k, v in messages]
    assert len(docs) == ROWS
    assert sorted(k["id"] for k, _ in docs) == list(range(1, ROWS + 1))
    for key, doc in docs:
        assert doc["op"] == "r" and doc["before"] is None
        assert doc["source"]["snapshot"] == "true" and doc["source"]["table"] == "items"
        assert doc["after"]["id"] == key["id"]
    # Values as the source holds them (a sample of columns through Postgres' own text).
    with psycopg.connect(pg.dsn(src)) as conn:
        want = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT id, i4, n::text, t, tstz AT TIME ZONE 'UTC', j::text FROM public.items"
            ).fetchall()
        }
    for _, doc in docs:
        after = doc["after"]
        i4, n, t, tstz, j = want[after["id"]]
        assert (after["i4"], after["n"], after["t"], after["j"]) == (i4, n, t, j)
        assert after["tstz"] == tstz.isoformat() + "+00:00"
