"""Snapshots end to end through the live server: incremental (DBLog watermarks) under a
concurrent workload, resume after kill -9, filters, cancel, blocking for keyless tables,
initial snapshots of tables added to a running source.

Correctness is judged by comparing source and destination contents (checksums).
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pyarrow.parquet as parquet
import pytest
from psycopg import sql

from tests.support import api, pg, workload
from tests.support.server import Server, wait_until
from tideflow.connectors.destinations.postgres.bulk import ChunkLoader
from tideflow.connectors.destinations.postgres.config import PostgresDestinationConfig
from tideflow.connectors.destinations.postgres.tables import Catalog
from tideflow.connectors.sources.postgres.config import PostgresSourceConfig
from tideflow.connectors.sources.postgres.snapshot import PostgresChunkReader
from tideflow.engine.snapshot.reader import TablePlan

pytestmark = pytest.mark.integration

ROWS = 50_000


@pytest.fixture
def dbs(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """Source and destination databases; the source's ``items`` in plain types (read as binary
    COPY chunks) when the test parametrizes ``dbs`` with True."""
    with pg.temp_database("src") as src, pg.temp_database("dst") as dst:
        workload.create_schema(src, plain=getattr(request, "param", False))
        yield src, dst


# Tests that run on both chunk formats (ADR 0005): the workload's items read as COPY text, and
# the same columns in types read as binary COPY.
both_formats = pytest.mark.parametrize(
    "dbs", [False, True], ids=["text-chunks", "binary-chunks"], indirect=True
)


def start(
    server: Server,
    src: str,
    dst: str,
    *,
    tables: str = "public.items",
    snapshot_new_tables: bool = False,
    dest_extra: dict[str, Any] | None = None,
    **source_extra: Any,
) -> dict[str, Any]:
    with server.client() as c:
        source = api.create_pg_source(c, api.pg_source_config(src, tables, **source_extra))
        dest = api.create_pg_destination(
            c, {**api.pg_destination_config(dst), **(dest_extra or {})}
        )
        body = {
            "name": api.unique("pipe"),
            "snapshot_new_tables": snapshot_new_tables,
            "source": {
                "id": source["id"],
                "name": source["name"],
                "connector": "postgresql",
                "topics": [],
            },
            "destination": {"id": dest["id"], "name": dest["name"], "connector": "postgresql"},
            "transforms": [],
            "tags": [],
        }
        pipe = api.create(c, "/pipelines", body)
        api.wait_status(c, "pipelines", pipe["id"], "Active")
        api.wait_status(c, "sources", source["id"], "Active")
    return {"source": source, "destination": dest, "pipeline": pipe}


def snapshot(c: httpx.Client, source_id: str, **body: Any) -> httpx.Response:
    return c.post("/sources/snapshot", json={"source_id": source_id, **body})


def progress(c: httpx.Client, source_id: str) -> dict[str, Any]:
    r = c.get(f"/sources/{source_id}/snapshot")
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def wait_snapshot(
    c: httpx.Client, source_id: str, want: str, timeout: float = 180
) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        p = progress(c, source_id)
        statuses = {t["status"] for t in p["topics"]}
        assert "failed" not in statuses or want == "failed", p
        return p if p["topics"] and statuses == {want} else None

    result: dict[str, Any] = wait_until(done, timeout, interval=0.5, what=f"snapshot {want}")
    return result


def _pgbench(db: str, seconds: int, failures: list[str]) -> None:
    try:
        workload.run_pgbench(db, seconds=seconds)
    except subprocess.CalledProcessError as exc:
        failures.append(str(exc.stderr)[-2000:])


def converges(src: str, dst: str, table: str = "items", timeout: float = 120) -> None:
    expected = workload.checksum(src, table=table)

    def same() -> bool:
        try:
            return workload.checksum(dst, table=table) == expected
        except Exception:
            return False

    wait_until(same, timeout, interval=0.5, what=f"destination {table} to equal source")


@both_formats
def test_incremental_snapshot_under_concurrent_writes(
    dbs: tuple[str, str], engine_server: Server
) -> None:
    src, dst = dbs
    workload.insert_range(src, 1, ROWS)  # before the slot: only a snapshot can copy them
    unit = start(engine_server, src, dst, **{"snapshot.chunk.size": 4000})
    sid = unit["source"]["id"]
    # pgbench updates, upserts and deletes ids 1..20000 while the chunks are read.
    failures: list[str] = []
    load = threading.Thread(target=_pgbench, args=(src, 10, failures))
    load.start()
    with engine_server.client() as c:
        r = snapshot(c, sid, topic_names=["public.items"])
        assert r.status_code == 202, r.text
        assert snapshot(c, sid).status_code == 409  # one at a time per source
        done = wait_snapshot(c, sid, "completed")
        topic = done["topics"][0]
        assert topic["rows_read"] >= ROWS * 0.9
        assert topic["chunks_done"] >= 10  # 4000-row chunks (some rows were deleted meanwhile)
        # Marked running with the table's estimate when it started (progress.start).
        assert topic["started_at"] is not None and topic["rows_total"] >= topic["rows_read"]
        metrics = c.get(f"/sources/{sid}/metrics")
    load.join()
    assert not failures, failures
    converges(src, dst)
    if metrics.status_code == 200:  # the metrics endpoint is built separately
        data = metrics.json().get("data", {})
        if "SnapshotCompleted" in data:
            assert data["SnapshotCompleted"] == 1


# 2000 rows: chunks split between two destination connections (bulk._SPLIT_ROWS).
@pytest.mark.parametrize("chunk", [1000, 2000], ids=["one-writer", "split-chunks"])
@both_formats
def test_snapshot_resumes_after_kill9(
    dbs: tuple[str, str], engine_server: Server, chunk: int
) -> None:
    src, dst = dbs
    workload.insert_range(src, 1, ROWS)
    unit = start(
        engine_server, src, dst, **{"snapshot.chunk.size": chunk, "snapshot.parallelism": 1}
    )
    sid = unit["source"]["id"]
    with engine_server.client() as c:
        assert snapshot(c, sid).status_code == 202

        def some_progress() -> int | None:
            read = int(progress(c, sid)["topics"][0]["rows_read"])
            return read if read >= 5000 else None

        before = wait_until(some_progress, 120, interval=0.2, what="snapshot progress")
    assert before < ROWS
    engine_server.kill9()
    engine_server.start()
    with engine_server.client() as c:
        after_restart = int(progress(c, sid)["topics"][0]["rows_read"])
        assert after_restart >= before  # durable progress survived the crash
        done = wait_snapshot(c, sid, "completed")
    converges(src, dst)
    topic = done["topics"][0]
    # Resumed, not restarted: reading went on after the persisted last key, so the persisted
    # count plus the rows read after the restart is the table once (a restart from scratch
    # would count the rows before the kill twice).
    assert topic["rows_read"] == ROWS, topic


def test_filtered_snapshot_reads_only_matching_rows(
    dbs: tuple[str, str], engine_server: Server
) -> None:
    src, dst = dbs
    workload.insert_range(src, 1, 5_000)
    sid = start(engine_server, src, dst)["source"]["id"]
    with engine_server.client() as c:
        cond = [{"data_collection": "public.items", "filter": "id % 10 = 0 AND t LIKE 'text%'"}]
        r = snapshot(c, sid, additional_conditions=cond)
        assert r.status_code == 202, r.text
        wait_snapshot(c, sid, "completed")
    with psycopg.connect(pg.dsn(dst)) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM public.items ORDER BY id")]
    assert ids == list(range(10, 5_001, 10))


@pytest.mark.parametrize(
    "predicate",
    [
        "id > 0; DROP TABLE items",
        "id > 0) OR (true",
        "id > 0 -- comment",
        "id IN (1, 2",
        "t = 'unterminated",
        "id > 0 OR (DELETE FROM items) IS NULL",
        "no_such_column = 1",
    ],
    ids=["semicolon", "escape-parens", "comment", "unbalanced", "quote", "dml", "not-compiling"],
)
def test_invalid_filter_is_422(dbs: tuple[str, str], engine_server: Server, predicate: str) -> None:
    src, dst = dbs
    sid = start(engine_server, src, dst)["source"]["id"]
    with engine_server.client() as c:
        cond = [{"data_collection": "public.items", "filter": predicate}]
        r = snapshot(c, sid, additional_conditions=cond)
        assert r.status_code == 422, r.text
        r = snapshot(c, sid, snapshot_type="blocking", additional_conditions=None)
        assert r.status_code == 202, r.text  # nothing was half-written by the refusal


def test_cancel_snapshot(dbs: tuple[str, str], engine_server: Server) -> None:
    src, dst = dbs
    workload.insert_range(src, 1, ROWS)
    sid = start(engine_server, src, dst, **{"snapshot.chunk.size": 500, "snapshot.parallelism": 1})[
        "source"
    ]["id"]
    with engine_server.client() as c:
        assert snapshot(c, sid).status_code == 202
        r = c.post("/sources/cancel_snapshot", json={"source_id": sid, "topic_names": None})
        assert r.status_code == 200, r.text
        assert {t["status"] for t in r.json()["topics"]} == {"cancelled"}
        # cancelled stays cancelled, and a new snapshot may start at once
        wait_snapshot(c, sid, "cancelled", timeout=5)
        assert snapshot(c, sid).status_code == 202


def test_blocking_snapshot_of_keyless_table(dbs: tuple[str, str], engine_server: Server) -> None:
    src, dst = dbs
    with psycopg.connect(pg.dsn(src), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.logs (at int, msg text)")
        conn.execute("ALTER TABLE public.logs REPLICA IDENTITY FULL")
        conn.execute("INSERT INTO public.logs SELECT g, 'm' || g FROM generate_series(1, 3000) g")
    sid = start(engine_server, src, dst, tables="public.logs")["source"]["id"]
    with engine_server.client() as c:
        r = snapshot(c, sid, snapshot_type="incremental")
        assert r.status_code == 422, r.text  # no key: incremental needs one
        cond = [{"data_collection": "public.logs", "filter": "at > 1"}]
        r = snapshot(c, sid, snapshot_type="blocking", additional_conditions=cond)
        assert r.status_code == 422, r.text  # blocking copies whole tables
        r = snapshot(c, sid, snapshot_type="blocking")
        assert r.status_code == 202, r.text
        wait_snapshot(c, sid, "completed")
    expected = pg.table_checksum(src, "public.logs", "at, msg", order_by="at, msg")
    wait_until(
        lambda: _checksum_or_none(dst, "public.logs", "at, msg") == expected,
        60,
        what="keyless table copied",
    )


def _checksum_or_none(db: str, table: str, cols: str) -> Any:
    try:
        return pg.table_checksum(db, table, cols, order_by=cols)
    except Exception:
        return None


def test_table_added_to_running_source_is_backfilled(
    dbs: tuple[str, str], engine_server: Server
) -> None:
    src, dst = dbs
    with psycopg.connect(pg.dsn(src), autocommit=True) as conn:
        conn.execute("CREATE TABLE public.extra (id int PRIMARY KEY, v text)")
        conn.execute("INSERT INTO public.extra SELECT g, 'v' || g FROM generate_series(1, 2000) g")
    unit = start(engine_server, src, dst, snapshot_new_tables=True)
    source = unit["source"]
    with engine_server.client() as c:
        config = dict(source["config"])
        config["table.include.list.user.defined"] = "public.items, public.extra"
        config["database.password"] = pg.PASSWORD
        body = {"name": source["name"], "connector": "postgresql", "config": config}
        r = c.put(f"/sources/{source['id']}", json=body)
        assert r.status_code == 200, r.text
        done = wait_snapshot(c, source["id"], "completed")
        assert "public.extra" in [t["topic_name"] for t in done["topics"]]
    expected = pg.table_checksum(src, "public.extra", "id, v", order_by="id")
    wait_until(
        lambda: _checksum_or_none(dst, "public.extra", "id, v") == expected,
        60,
        what="added table backfilled",
    )


def test_cli_snapshot_follows_to_completion(dbs: tuple[str, str], engine_server: Server) -> None:
    import sys

    src, dst = dbs
    workload.insert_range(src, 1, 3_000)
    source = start(engine_server, src, dst)["source"]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tideflow.cli.main",
            "sources",
            "snapshot",
            source["name"],
            "--table",
            "public.items",
            "--filter",
            "public.items:id <= 1000",
            "--url",
            engine_server.url,
            "--token",
            engine_server.token(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "public.items" in out.stdout
    wait_until(lambda: _ids(dst) == (1000, 1, 1000), 30, what="rows 1..1000 copied")


def _ids(db: str) -> Any:
    try:
        with psycopg.connect(pg.dsn(db)) as conn:
            return conn.execute("SELECT count(*), min(id), max(id) FROM public.items").fetchone()
    except psycopg.Error:
        return None


@pytest.mark.parametrize("binary_mode", ["bytes", "base64"])
def test_copy_chunk_decodes_to_the_row_by_row_values(
    dbs: tuple[str, str], binary_mode: str
) -> None:
    """A chunk read as COPY text decodes to exactly the values the per-row read converts
    (every mapped type, escapes, NULLs, TOASTed values): destinations that get the chunk as
    events see what they saw before, and its key fields match streamed keys."""
    src, _ = dbs
    workload.insert_range(src, 1, 300)
    with psycopg.connect(pg.dsn(src), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO public.items (id, t, vc, ta, big) VALUES "
            "(301, E'tab\\there\\\\back\\nline', NULL, ARRAY[E'a\\tb', NULL], NULL)"
        )
    config = PostgresSourceConfig.model_validate(
        {
            **api.pg_source_config(src, "public.items"),
            "binary.handling.mode": binary_mode,
        }
    )
    reader = PostgresChunkReader(config)
    try:
        plan = reader.plan("public.items", None)
        got = reader.read_chunk(plan, None, None, None)
        assert got.chunk is not None
        assert got.chunk.exact is (binary_mode == "bytes")
        assert got.count == 301 and got.last == ("301",)
        by_row = _rows_by_select(reader, plan)
        assert [e.after for e in got.chunk.events()] == by_row
        assert [got.chunk.key(x) for x in got.chunk.lines()] == [(r["id"],) for r in by_row]
        part = reader.read_chunk(plan, ("100",), ("200",), "id % 2 = 0")
        assert part.count == 50 and part.last == ("200",)
    finally:
        reader.close()


def _rows_by_select(reader: PostgresChunkReader, plan: TablePlan) -> list[dict[str, Any]]:
    """The table row by row as the streaming decoder converts values: each column's output
    text (``format('%s')``, what pgoutput sends) through the source's converters."""
    layout, _ = reader._layout(plan)
    converters = list(zip(layout.columns, layout.converters, strict=True))
    columns = sql.SQL(", ").join(
        sql.SQL("CASE WHEN {c} IS NULL THEN NULL ELSE format('%s', {c}) END").format(
            c=sql.Identifier(name)
        )
        for name, _ in converters
    )
    query = sql.SQL("SELECT {} FROM public.items ORDER BY id").format(columns)
    texts = reader._conn.execute(query).fetchall()  # the reader's pinned output styles
    return [
        {
            name: None if text is None else convert(text) if convert is not None else text
            for (name, convert), text in zip(converters, values, strict=True)
        }
        for values in texts
    ]


def test_blocking_scan_streams_copy_chunks(dbs: tuple[str, str]) -> None:
    """A blocking snapshot's scan: COPY text chunks of ``size`` lines from one transaction,
    decoding to the rows the chunk read gives; a scan abandoned half-way ends its query and
    leaves the reader usable."""
    src, _ = dbs
    workload.insert_range(src, 1, 2_500)
    reader = PostgresChunkReader(
        PostgresSourceConfig.model_validate(api.pg_source_config(src, "public.items"))
    )
    try:
        plan = reader.plan("public.items", None)
        parts = list(reader.scan(plan, None, 1_000))
        assert [p.rows for p in parts] == [1_000, 1_000, 500]
        whole = reader.read_chunk(plan, None, None, None).chunk
        assert whole is not None
        got = sorted((e.after for p in parts for e in p.events()), key=lambda r: r["id"])
        assert got == [e.after for e in whole.events()]

        scan = reader.scan(plan, None, 1_000)
        assert next(scan).rows == 1_000
        scan.close()  # as a cancelled blocking snapshot does
        assert [p.rows for p in reader.scan(plan, None, 2_000)] == [2_000, 500]
    finally:
        reader.close()


def test_snapshot_over_rows_the_destination_already_has(
    dbs: tuple[str, str], engine_server: Server
) -> None:
    """Chunks whose keys are already at the destination (a chunk replayed after a crash, a
    repeated snapshot) fall back from the straight COPY to an upsert: no duplicate, no error,
    and the stale copies are overwritten."""
    src, dst = dbs
    workload.insert_range(src, 1, 20_000)
    unit = start(engine_server, src, dst, **{"snapshot.chunk.size": 3000})
    sid = unit["source"]["id"]
    with engine_server.client() as c:
        assert snapshot(c, sid).status_code == 202
        wait_snapshot(c, sid, "completed")
    converges(src, dst)
    # Stale destination rows in some chunks (as if written by an older run), others missing.
    with psycopg.connect(pg.dsn(dst), autocommit=True) as conn:
        conn.execute("UPDATE public.items SET t = 'stale', i4 = -1 WHERE id % 7 = 0")
        conn.execute("DELETE FROM public.items WHERE id BETWEEN 9001 AND 12000")
    with engine_server.client() as c:
        assert snapshot(c, sid).status_code == 202
        done = wait_snapshot(c, sid, "completed")
        assert done["topics"][0]["rows_read"] == 20_000
    converges(src, dst)


def test_chunk_loader_copies_then_upserts_keys_already_there(dbs: tuple[str, str]) -> None:
    """The Postgres destination's fast path itself: a chunk of every mapped type loads with a
    straight COPY into an empty table; loaded again over stale and missing rows (a replay), the
    unique violation sends it through staging + upsert, without error or duplicate."""
    src, dst = dbs
    workload.insert_range(src, 1, 500)
    reader = PostgresChunkReader(
        PostgresSourceConfig.model_validate(api.pg_source_config(src, "public.items"))
    )
    try:
        plan = reader.plan("public.items", None)
        chunk = reader.read_chunk(plan, None, None, None).chunk
    finally:
        reader.close()
    assert chunk is not None
    config = PostgresDestinationConfig.model_validate(api.pg_destination_config(dst))
    with psycopg.connect(pg.dsn(dst), autocommit=True) as conn:
        catalog = Catalog(conn, config)
        dest = catalog.ensure(chunk.table)
        loader = ChunkLoader(conn, config)
        columns = loader.columns(chunk, dest)
        assert columns is not None, "every column of the workload table loads as COPY text"
        with conn.transaction():
            loader.load(chunk, dest, columns)
        assert workload.checksum(dst) == workload.checksum(src)
        conn.execute("UPDATE public.items SET t = 'stale', i4 = -1 WHERE id % 3 = 0")
        conn.execute("DELETE FROM public.items WHERE id > 400")
        with conn.transaction():
            loader.load(chunk, dest, columns)
        row = conn.execute("SELECT count(*), count(*) FILTER (WHERE t = 'stale') FROM items")
        assert row.fetchone() == (500, 0)
    assert workload.checksum(dst) == workload.checksum(src)


def test_chunk_loader_parts_on_parallel_connections(dbs: tuple[str, str]) -> None:
    """A keyed chunk cut into parts loaded by helper connections at the same time: every row
    lands once; loaded again over stale and missing rows, each part upserts; a part refused
    by the destination fails the load, and the chunk written again once the cause is gone
    leaves the table equal to the source."""
    src, dst = dbs
    workload.insert_range(src, 1, 6_000)
    reader = PostgresChunkReader(
        PostgresSourceConfig.model_validate(api.pg_source_config(src, "public.items"))
    )
    try:
        plan = reader.plan("public.items", None)
        chunk = reader.read_chunk(plan, None, None, None).chunk
    finally:
        reader.close()
    assert chunk is not None
    config = PostgresDestinationConfig.model_validate(api.pg_destination_config(dst))
    helpers: list[psycopg.Connection[tuple[object, ...]]] = []

    def connect() -> psycopg.Connection[tuple[object, ...]]:
        conn = psycopg.connect(pg.dsn(dst), autocommit=True)
        helpers.append(conn)
        return conn

    with psycopg.connect(pg.dsn(dst), autocommit=True) as conn:
        dest = Catalog(conn, config).ensure(chunk.table)
        loader = ChunkLoader(conn, config, connect, writers=3)
        try:
            columns = loader.columns(chunk, dest)
            assert columns is not None
            with conn.transaction():
                loader.load(chunk, dest, columns)
            assert len(helpers) == 2, "two helper connections loaded a part each"
            assert workload.checksum(dst) == workload.checksum(src)

            conn.execute("UPDATE public.items SET t = 'stale' WHERE id % 3 = 0")
            conn.execute("DELETE FROM public.items WHERE id < 300 OR id > 5500")  # every part
            with conn.transaction():
                loader.load(chunk, dest, columns)
            assert workload.checksum(dst) == workload.checksum(src)

            # The last part (a helper's) holds id 5990: refused, the load fails.
            conn.execute("DELETE FROM public.items")
            conn.execute("ALTER TABLE public.items ADD CONSTRAINT no_5990 CHECK (id <> 5990)")
            with pytest.raises(psycopg.errors.CheckViolation), conn.transaction():
                loader.load(chunk, dest, columns)
            with psycopg.connect(pg.dsn(dst)) as other:
                row = other.execute("SELECT count(*) FROM public.items WHERE id > 5000")
                assert row.fetchone() == (0,), "the refused part is rolled back"
            conn.execute("ALTER TABLE public.items DROP CONSTRAINT no_5990")
            with conn.transaction():
                loader.load(chunk, dest, columns)
        finally:
            loader.close()
        assert all(h.closed for h in helpers)
    assert workload.checksum(dst) == workload.checksum(src)


@both_formats
def test_parallel_chunk_loads_under_concurrent_writes(
    dbs: tuple[str, str], engine_server: Server
) -> None:
    """Chunks large enough to be split between destination connections
    (``snapshot.load.connections`` 2), while pgbench updates, upserts and deletes rows inside
    the chunks' windows: the destination ends equal to the source by checksum."""
    src, dst = dbs
    workload.insert_range(src, 1, ROWS)
    unit = start(
        engine_server,
        src,
        dst,
        dest_extra={"snapshot.load.connections": 2},
        **{"snapshot.chunk.size": 12_000},
    )
    sid = unit["source"]["id"]
    failures: list[str] = []
    load = threading.Thread(target=_pgbench, args=(src, 8, failures))
    load.start()
    with engine_server.client() as c:
        assert snapshot(c, sid).status_code == 202
        wait_snapshot(c, sid, "completed")
    load.join()
    assert not failures, failures
    converges(src, dst)
    with psycopg.connect(pg.dsn(dst)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE 'tideflow:%'"
        ).fetchone()
    assert row is not None and row[0] >= 2, "chunks were loaded by more than one connection"


def test_snapshot_into_a_destination_without_chunks_gets_events(
    dbs: tuple[str, str], engine_server: Server, tmp_path: Path
) -> None:
    """A destination that does not take COPY-text chunks (Parquet files) gets each chunk as
    one op=r event per row, with the values the row-by-row read gave."""
    src, _ = dbs
    workload.insert_range(src, 1, 5_000)
    lake = tmp_path / "lake"
    with engine_server.client() as c:
        source = api.create_pg_source(
            c, api.pg_source_config(src, "public.items", **{"snapshot.chunk.size": 700})
        )
        dest = api.create(
            c,
            "/destinations",
            {
                "name": api.unique("lake"),
                "connector": "files",
                "config": {"path.user.defined": str(lake)},
            },
        )
        pipe = api.create_pipeline(c, source, dest)
        api.wait_status(c, "pipelines", pipe["id"], "Active")
        api.wait_status(c, "sources", source["id"], "Active")
        assert snapshot(c, source["id"]).status_code == 202
        wait_snapshot(c, source["id"], "completed")

    def rows() -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        folder = lake / "public.items"
        for name in sorted(os.listdir(folder)) if folder.exists() else []:
            for r in parquet.read_table(folder / name).to_pylist():
                assert r["op"] == "r"
                out[r["after"]["id"]] = r["after"]
        return out

    got = wait_until(lambda: (r := rows()) and len(r) == 5_000 and r, 60, what="parquet rows")
    with psycopg.connect(pg.dsn(src)) as conn:
        expected = dict(conn.execute("SELECT id, t FROM public.items").fetchall())
    assert {k: v["t"] for k, v in got.items()} == expected
