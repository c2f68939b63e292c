"""End to end through the live server: Postgres → Postgres and Postgres → Parquet, with faults.

Correctness is always judged by comparing source and destination contents (checksums), never by
counting log lines.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.support import api, pg, workload
from tests.support.proxy import Proxy
from tests.support.server import Server, wait_until

pytestmark = pytest.mark.integration

CHAOS_ROUNDS = int(os.environ.get("TIDEFLOW_CHAOS_ROUNDS", "2"))


@pytest.fixture
def dbs() -> Iterator[tuple[str, str]]:
    with pg.temp_database("src") as src, pg.temp_database("dst") as dst:
        workload.create_schema(src)
        yield src, dst


def start_pipeline(
    server: Server, src: str, dst: str, *, dest_port: int | None = None, files: Path | None = None
) -> dict[str, Any]:
    with server.client() as c:
        source = api.create_pg_source(c, api.pg_source_config(src))
        dest = api.create_pg_destination(c, api.pg_destination_config(dst, port=dest_port))
        pipe = api.create_pipeline(c, source, dest)
        out = {"source": source, "destination": dest, "pipeline": pipe}
        if files is not None:
            fdest = api.create(
                c,
                "/destinations",
                {
                    "name": api.unique("files"),
                    "connector": "files",
                    "config": {"path.user.defined": str(files), "format.user.defined": "parquet"},
                },
            )
            out["files_pipeline"] = api.create_pipeline(c, source, fdest)
            api.wait_status(c, "pipelines", out["files_pipeline"]["id"], "Active")
        api.wait_status(c, "pipelines", pipe["id"], "Active")
        api.wait_status(c, "sources", source["id"], "Active")
    return out


def assert_converges(src: str, dst: str, timeout: float = 120) -> None:
    expected = workload.checksum(src)

    def same() -> bool:
        try:
            return workload.checksum(dst) == expected
        except Exception:
            return False

    wait_until(same, timeout, interval=0.5, what=f"destination to equal source {expected}")


def fold_parquet(root: Path) -> dict[int, dict[str, Any]]:
    """Apply the change log in the Parquet files, in file order, to get the final table."""
    rows: dict[int, dict[str, Any]] = {}
    for path in sorted(root.rglob("*.parquet")):
        for rec in pq.read_table(path).to_pylist():
            op, after, before = rec["op"], rec.get("after"), rec.get("before")
            if op == "d":
                rows.pop(int(before["id"]), None)
            elif op in ("c", "u", "r"):
                rows[int(after["id"])] = after
    return rows


def source_ids_and_t(src: str) -> dict[int, str]:
    import psycopg

    with psycopg.connect(pg.dsn(src)) as conn:
        return {int(i): t for i, t in conn.execute("SELECT id, t FROM public.items")}


def test_streams_every_type_to_postgres_and_parquet(
    dbs: tuple[str, str], engine_server: Server, tmp_path: Path
) -> None:
    src, dst = dbs
    files = tmp_path / "lake"
    start_pipeline(engine_server, src, dst, files=files)
    workload.insert_range(src, 1, 20_000)  # one large transaction
    workload.run_pgbench(src, seconds=8)
    workload.touch_toast_rows(src)  # TOASTed values arrive as "unchanged"
    assert_converges(src, dst)
    expected = source_ids_and_t(src)
    wait_until(
        lambda: {k: v["t"] for k, v in fold_parquet(files).items()} == expected,
        60,
        what="parquet to fold to the source table",
    )


def test_survives_kill9_during_load(dbs: tuple[str, str], engine_server: Server) -> None:
    src, dst = dbs
    start_pipeline(engine_server, src, dst)
    load = threading.Thread(
        target=workload.run_pgbench, args=(src,), kwargs={"seconds": 6 * CHAOS_ROUNDS + 4}
    )
    load.start()
    for _ in range(CHAOS_ROUNDS):
        threading.Event().wait(random.uniform(1.0, 4.0))
        engine_server.kill9()
        engine_server.start()
    load.join()
    assert_converges(src, dst)


def test_survives_source_restart(dbs: tuple[str, str], engine_server: Server) -> None:
    src, dst = dbs
    start_pipeline(engine_server, src, dst)
    workload.insert_range(src, 1, 5_000)
    subprocess.run(["pg_ctlcluster", "15", "main", "restart", "-m", "fast"], check=True)
    wait_until(lambda: pg.table_checksum("postgres", "pg_class", "1"), 30, what="postgres back")
    workload.run_pgbench(src, seconds=3)
    assert_converges(src, dst, timeout=180)


def test_survives_destination_outage(dbs: tuple[str, str], engine_server: Server) -> None:
    src, dst = dbs
    proxy = Proxy(pg.HOST, pg.PORT).start()
    try:
        start_pipeline(engine_server, src, dst, dest_port=proxy.port)
        workload.insert_range(src, 1, 2_000)
        proxy.cut()
        load = threading.Thread(target=workload.run_pgbench, args=(src,), kwargs={"seconds": 5})
        load.start()
        threading.Event().wait(int(os.environ.get("TIDEFLOW_OUTAGE_SECONDS", "30")))
        load.join()
        proxy.restore()
        assert_converges(src, dst, timeout=180)
    finally:
        proxy.stop()


def test_pause_keeps_slot_and_loses_nothing(dbs: tuple[str, str], engine_server: Server) -> None:
    src, dst = dbs
    units = start_pipeline(engine_server, src, dst)
    source_id = units["source"]["id"]
    with engine_server.client() as c:
        assert c.post(f"/sources/{source_id}/pause").status_code == 200
        api.wait_status(c, "sources", source_id, "Paused")
        slot = units["source"]["config"]["slot.name"]
        workload.run_pgbench(src, seconds=int(os.environ.get("TIDEFLOW_PAUSE_SECONDS", "60")))
        with pg_conn() as conn:
            row = conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
        assert row is not None, "the slot must survive a pause"
        assert c.post(f"/sources/{source_id}/resume").status_code == 200
    assert_converges(src, dst)


def pg_conn() -> Any:
    import psycopg

    return psycopg.connect(pg.dsn(), autocommit=True)
