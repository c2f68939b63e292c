"""Postgres snapshots with watermarks as rows of a signal table (instead of logical messages),
end to end through the live server under a concurrent pgbench workload."""

from __future__ import annotations

import threading

import psycopg
import pytest

from tests.e2e.test_snapshots import ROWS, _pgbench, converges, snapshot, start, wait_snapshot
from tests.support import pg, workload
from tests.support.server import Server

pytestmark = pytest.mark.integration

SIGNAL_KEYS = {
    "signal.data.collection.schema.or.database": "public",
    "snapshot.read.only.user.defined": "No",
    "snapshot.chunk.size": 4000,
}


def test_incremental_snapshot_with_signal_table_watermarks(engine_server: Server) -> None:
    with pg.temp_database("src") as src, pg.temp_database("dst") as dst:
        workload.create_schema(src)
        workload.insert_range(src, 1, ROWS)
        sid = start(engine_server, src, dst, **SIGNAL_KEYS)["source"]["id"]
        with psycopg.connect(pg.dsn(src)) as conn:
            published = conn.execute(
                "SELECT tablename FROM pg_publication_tables WHERE tablename = 'tideflow_signal'"
            ).fetchall()
        assert published, "the signal table is published so its inserts reach the slot"
        failures: list[str] = []
        load = threading.Thread(target=_pgbench, args=(src, 10, failures))
        load.start()
        with engine_server.client() as c:
            r = snapshot(c, sid, topic_names=["public.items"])
            assert r.status_code == 202, r.text
            done = wait_snapshot(c, sid, "completed")
        load.join()
        assert not failures, failures
        assert done["topics"][0]["chunks_done"] >= 10
        converges(src, dst)
        with psycopg.connect(pg.dsn(src)) as conn:
            assert conn.execute("SELECT count(*) FROM public.tideflow_signal").fetchone() == (0,)
        with psycopg.connect(pg.dsn(dst)) as conn:
            tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables")}
        assert "tideflow_signal" not in tables  # watermarks never reach destinations
        with engine_server.client() as c:
            r = snapshot(c, sid, topic_names=["public.tideflow_signal"])
        assert r.status_code == 422, r.text  # not a table of the source
