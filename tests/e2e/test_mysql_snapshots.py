"""MariaDB snapshots end to end through the live server: incremental (signal-table watermarks)
under a concurrent workload, resume after kill -9, filters, cancel, initial snapshots.

Contents are compared in the normal form of ``tests/support/mysql_workload.py`` (every mapped
type), source against the Postgres destination.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.support import api, mysql, pg
from tests.support import mysql_workload as wl
from tests.support.server import Server, wait_until

pytestmark = pytest.mark.integration

ROWS = 20_000


@pytest.fixture
def dbs() -> Iterator[tuple[str, str]]:
    """(MariaDB source database with table t, Postgres destination database)."""
    with mysql.temp_database("tfsnap") as src, pg.temp_database("dst") as dst:
        mysql.execute(wl.TABLE.format(db=src))
        yield src, dst


def fill(db: str, first: int, last: int, seed: int = 1) -> None:
    """Rows ``first..last`` of every type, in multi-row inserts (before any source exists)."""
    rng = random.Random(seed)
    rows = [wl.row_values(rng, k) for k in range(first, last + 1)]
    cols = list(rows[0])
    sql = (
        f"INSERT INTO `{db}`.`t` ({', '.join(f'`{c}`' for c in cols)}) "
        f"VALUES ({', '.join(['%s'] * len(cols))})"
    )
    with mysql.connect(autocommit=False) as conn, conn.cursor() as cur:
        cur.execute("SET SESSION sql_mode = ''")  # zero dates
        for i in range(0, len(rows), 2000):
            cur.executemany(sql, [[r[c] for c in cols] for r in rows[i : i + 2000]])
        conn.commit()


def start(
    server: Server, src: str, dst: str, *, snapshot_new_tables: bool = False, **source_keys: Any
) -> str:
    """Create a mariadb source of ``src.t`` and a pipeline to Postgres; return the source id."""
    with server.client() as c:
        source = api.create(
            c,
            "/sources",
            {
                "name": api.unique("maria"),
                "connector": "mariadb",
                "config": mysql.source_config(
                    **{"table.include.list.user.defined": f"{src}.t", **source_keys}
                ),
            },
        )
        dest = api.create(
            c,
            "/destinations",
            {
                "name": api.unique("pg"),
                "connector": "postgresql",
                "config": api.pg_destination_config(dst),
            },
        )
        body = {
            "name": api.unique("pipe"),
            "snapshot_new_tables": snapshot_new_tables,
            "source": {"id": source["id"], "name": source["name"], "connector": "mariadb"},
            "destination": {"id": dest["id"], "name": dest["name"], "connector": "postgresql"},
            "transforms": [],
            "tags": [],
        }
        pipe = api.create(c, "/pipelines", body)
        api.wait_status(c, "pipelines", pipe["id"], "Active")
        api.wait_status(c, "sources", source["id"], "Active")
    return str(source["id"])


def snapshot(c: httpx.Client, source_id: str, **body: Any) -> httpx.Response:
    return c.post("/sources/snapshot", json={"source_id": source_id, **body})


def progress(c: httpx.Client, source_id: str) -> dict[str, Any]:
    r = c.get(f"/sources/{source_id}/snapshot")
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def wait_snapshot(
    c: httpx.Client, source_id: str, want: str, timeout: float = 240
) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        p = progress(c, source_id)
        statuses = {t["status"] for t in p["topics"]}
        assert "failed" not in statuses or want == "failed", p
        return p if p["topics"] and statuses == {want} else None

    result: dict[str, Any] = wait_until(done, timeout, interval=0.5, what=f"snapshot {want}")
    return result


def converges(src: str, dst: str, timeout: float = 120) -> None:
    columns = wl.source_columns(src)
    expected = wl.source_rows(src, columns)
    last: dict[Any, Any] = {}

    def same() -> bool:
        nonlocal last
        try:
            last = wl.pg_rows(dst, columns)
        except psycopg.Error:
            return False
        return bool(last == expected)

    try:
        wait_until(same, timeout, interval=0.5, what="postgres to equal the source")
    except AssertionError:
        diff = [k for k in set(expected) | set(last) if expected.get(k) != last.get(k)]
        k = sorted(diff)[0] if diff else None
        raise AssertionError(
            f"{len(diff)} rows differ, e.g. id {k}: source {expected.get(k)} vs {last.get(k)} "
            f"(source {wl.digest(expected)}, postgres {wl.digest(last)})"
        ) from None


def _load(src: str, stop: threading.Event, errors: list[BaseException]) -> None:
    """Random updates, deletes and upserts over the snapshotted keys until ``stop``."""
    rng = random.Random(5)
    try:
        while not stop.is_set():
            wl.random_ops(src, rng, 10, keys=ROWS)
    except BaseException as exc:
        errors.append(exc)


def test_incremental_snapshot_under_concurrent_writes(
    dbs: tuple[str, str], engine_server: Server
) -> None:
    src, dst = dbs
    fill(src, 1, ROWS)  # before the source exists: only the snapshot can copy these rows
    sid = start(engine_server, src, dst, **{"snapshot.chunk.size": 2000})
    stop, errors = threading.Event(), []
    writer = threading.Thread(target=_load, args=(src, stop, errors))
    writer.start()
    try:
        with engine_server.client() as c:
            r = snapshot(c, sid, topic_names=[f"{src}.t"])
            assert r.status_code == 202, r.text
            assert snapshot(c, sid).status_code == 409  # one at a time per source
            done = wait_snapshot(c, sid, "completed")
    finally:
        stop.set()
        writer.join()
    assert not errors, errors
    topic = done["topics"][0]
    assert topic["rows_read"] >= ROWS * 0.8, topic
    assert topic["chunks_done"] >= 8, topic
    converges(src, dst)
    # The watermarks never reach the destination, and the signal table stays empty.
    assert mysql.execute(f"SELECT COUNT(*) FROM `{src}`.`tideflow_signal`")[0][0] == 0
    with psycopg.connect(pg.dsn(dst)) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables")}
    assert "tideflow_signal" not in tables


def test_snapshot_resumes_after_kill9(dbs: tuple[str, str], engine_server: Server) -> None:
    src, dst = dbs
    fill(src, 1, ROWS)
    keys = {"snapshot.chunk.size": 500, "snapshot.parallelism": 1}
    sid = start(engine_server, src, dst, **keys)
    with engine_server.client() as c:
        assert snapshot(c, sid).status_code == 202

        def some_progress() -> int | None:
            read = int(progress(c, sid)["topics"][0]["rows_read"])
            return read if read >= 3000 else None

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
    # Resumed after the persisted last key, not restarted: a restart from scratch would count
    # the rows recorded before the kill twice.
    assert topic["rows_read"] == ROWS, topic


def test_snapshot_under_writes_resumes_after_kill9(
    dbs: tuple[str, str], engine_server: Server
) -> None:
    src, dst = dbs
    fill(src, 1, ROWS)
    sid = start(engine_server, src, dst, **{"snapshot.chunk.size": 500})
    stop, errors = threading.Event(), []
    writer = threading.Thread(target=_load, args=(src, stop, errors))
    writer.start()
    try:
        with engine_server.client() as c:
            assert snapshot(c, sid).status_code == 202
            wait_until(
                lambda: int(progress(c, sid)["topics"][0]["rows_read"]) >= 3000,
                120,
                interval=0.2,
                what="snapshot progress",
            )
        engine_server.kill9()
        engine_server.start()
        with engine_server.client() as c:
            done = wait_snapshot(c, sid, "completed")
    finally:
        stop.set()
        writer.join()
    assert not errors, errors
    # Keys stay within 1..ROWS: a snapshot restarted from scratch would count more.
    assert done["topics"][0]["rows_read"] <= ROWS, done
    converges(src, dst)


def test_filtered_snapshot_reads_only_matching_rows(
    dbs: tuple[str, str], engine_server: Server
) -> None:
    src, dst = dbs
    fill(src, 1, 3000)
    sid = start(engine_server, src, dst)
    with engine_server.client() as c:
        cond = [{"data_collection": f"{src}.t", "filter": "id % 10 = 0 AND `c` IS NOT NULL"}]
        r = snapshot(c, sid, additional_conditions=cond)
        assert r.status_code == 202, r.text
        done = wait_snapshot(c, sid, "completed")
    assert done["topics"][0]["rows_read"] == 300
    want = [str(i) for i in range(10, 3001, 10)]
    wait_until(lambda: _pg_ids(dst) == want, 60, interval=0.5, what="only rows id % 10 = 0")


UNSAFE_OR_BROKEN = {
    "semicolon": "id > 0; DROP TABLE t",
    "backslash-escape": "vc = 'a\\' OR id > 0",
    "hash-comment": "id > 0 # comment",
    "dash-comment": "id > 0 -- comment",
    "quote-in-identifier": "`x'` = 1",
    "sleep": "SLEEP(1) = 0",
    "dml": "id > 0 OR (DELETE FROM t) IS NULL",
    "not-compiling": "no_such_column = 1",
}


def test_unsafe_or_broken_filters_are_422(dbs: tuple[str, str], engine_server: Server) -> None:
    src, dst = dbs
    sid = start(engine_server, src, dst)
    with engine_server.client() as c:
        for name, predicate in UNSAFE_OR_BROKEN.items():
            cond = [{"data_collection": f"{src}.t", "filter": predicate}]
            r = snapshot(c, sid, additional_conditions=cond)
            assert r.status_code == 422, (name, r.text)
        assert progress(c, sid)["topics"] == []  # nothing was half-written by the refusals


def test_cancel_snapshot(dbs: tuple[str, str], engine_server: Server) -> None:
    src, dst = dbs
    fill(src, 1, ROWS)
    sid = start(engine_server, src, dst, **{"snapshot.chunk.size": 200, "snapshot.parallelism": 1})
    with engine_server.client() as c:
        assert snapshot(c, sid).status_code == 202
        wait_until(lambda: progress(c, sid)["topics"][0]["status"] == "running", 30, what="running")
        r = c.post("/sources/cancel_snapshot", json={"source_id": sid, "topic_names": None})
        assert r.status_code == 200, r.text
        assert {t["status"] for t in r.json()["topics"]} == {"cancelled"}
        wait_snapshot(c, sid, "cancelled", timeout=5)  # cancelled stays cancelled
        assert snapshot(c, sid).status_code == 202  # and a new snapshot may start at once
        c.post("/sources/cancel_snapshot", json={"source_id": sid, "topic_names": None})


def test_initial_snapshot_of_a_new_pipeline(dbs: tuple[str, str], engine_server: Server) -> None:
    src, dst = dbs
    fill(src, 1, 2000)
    sid = start(engine_server, src, dst, snapshot_new_tables=True)
    wl.random_ops(src, random.Random(9), 30, keys=2500)  # streamed next to the snapshot
    with engine_server.client() as c:
        done = wait_snapshot(c, sid, "completed")
    assert [t["topic_name"] for t in done["topics"]] == [f"{src}.t"]
    converges(src, dst)


def test_signal_table_needs_privileges_clear_422(
    dbs: tuple[str, str], engine_server: Server
) -> None:
    src, dst = dbs
    user = "tf_e2e_nosignal"
    mysql.execute(
        f"DROP USER IF EXISTS '{user}'@'127.0.0.1'",
        f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw'",
        f"GRANT SELECT ON `{src}`.* TO '{user}'@'127.0.0.1'",
        f"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO '{user}'@'127.0.0.1'",
    )
    try:
        sid = start(engine_server, src, dst, **{"database.user": user, "database.password": "pw"})
        with engine_server.client() as c:
            r = snapshot(c, sid)
        assert r.status_code == 422, r.text
        assert f"{src}.tideflow_signal" in r.text and "GRANT" in r.text, r.text
    finally:
        mysql.execute(f"DROP USER '{user}'@'127.0.0.1'")


def _pg_ids(db: str) -> list[str] | None:
    try:
        with psycopg.connect(pg.dsn(db)) as conn:
            return [str(r[0]) for r in conn.execute('SELECT id FROM public."t" ORDER BY id')]
    except psycopg.Error:
        return None


def test_blocking_snapshot_of_keyless_table(dbs: tuple[str, str], engine_server: Server) -> None:
    src, dst = dbs
    mysql.execute(
        f"CREATE TABLE `{src}`.`logs` (at INT, msg VARCHAR(20))",
        f"INSERT INTO `{src}`.`logs` SELECT seq, CONCAT('m', seq) FROM `{src}`.seq_1_to_3000",
    )
    sid = start(engine_server, src, dst, **{"table.include.list.user.defined": f"{src}.logs"})
    with engine_server.client() as c:
        r = snapshot(c, sid, snapshot_type="incremental")
        assert r.status_code == 422, r.text  # no key: incremental needs one
        r = snapshot(c, sid, snapshot_type="blocking")
        assert r.status_code == 202, r.text
        wait_snapshot(c, sid, "completed")
    expected = [(i, f"m{i}") for i in range(1, 3001)]
    wait_until(lambda: _pg_logs(dst) == expected, 60, interval=0.5, what="keyless table copied")


def _pg_logs(db: str) -> list[tuple[int, str]] | None:
    try:
        with psycopg.connect(pg.dsn(db)) as conn:
            rows = conn.execute('SELECT at, msg FROM public."logs" ORDER BY at, msg').fetchall()
            return [(int(a), str(m)) for a, m in rows]
    except psycopg.Error:
        return None


def test_table_added_to_running_source_is_backfilled(
    dbs: tuple[str, str], engine_server: Server
) -> None:
    src, dst = dbs
    mysql.execute(
        f"CREATE TABLE `{src}`.`extra` (id INT PRIMARY KEY, v VARCHAR(20))",
        f"INSERT INTO `{src}`.`extra` SELECT seq, CONCAT('v', seq) FROM `{src}`.seq_1_to_2000",
    )
    sid = start(engine_server, src, dst, snapshot_new_tables=True)
    with engine_server.client() as c:
        wait_snapshot(c, sid, "completed")  # the initial snapshot of t (empty)
        source = c.get(f"/sources/{sid}").json()["result"][0]
        config = dict(source["config"])
        config["table.include.list.user.defined"] = f"{src}.t, {src}.extra"
        body = {"name": source["name"], "connector": "mariadb", "config": config}
        r = c.put(f"/sources/{sid}", json=body)
        assert r.status_code == 200, r.text
        done = wait_snapshot(c, sid, "completed")
        assert f"{src}.extra" in [t["topic_name"] for t in done["topics"]]
        # A surrogate key orders chunks too (here the same column, named explicitly).
        r = snapshot(c, sid, topic_names=[f"{src}.extra"], surrogate_key="id")
        assert r.status_code == 202, r.text
        done = wait_snapshot(c, sid, "completed")
        assert [t["rows_read"] for t in done["topics"] if t["topic_name"] == f"{src}.extra"] == [
            2000
        ]
    want = [(i, f"v{i}") for i in range(1, 2001)]
    wait_until(lambda: _pg_extra(dst) == want, 60, interval=0.5, what="added table backfilled")


def _pg_extra(db: str) -> list[tuple[int, str]] | None:
    try:
        with psycopg.connect(pg.dsn(db)) as conn:
            rows = conn.execute('SELECT id, v FROM public."extra" ORDER BY id').fetchall()
            return [(int(a), str(b)) for a, b in rows]
    except psycopg.Error:
        return None


def test_cli_snapshot_follows_to_completion(dbs: tuple[str, str], engine_server: Server) -> None:
    src, dst = dbs
    fill(src, 1, 3000)
    sid = start(engine_server, src, dst)
    with engine_server.client() as c:
        name = c.get(f"/sources/{sid}").json()["result"][0]["name"]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tideflow.cli.main",
            "sources",
            "snapshot",
            name,
            "--table",
            f"{src}.t",
            "--filter",
            f"{src}.t:id <= 1000",
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
    assert f"{src}.t" in out.stdout
    want = [str(i) for i in range(1, 1001)]
    wait_until(lambda: _pg_ids(dst) == want, 30, interval=0.5, what="rows 1..1000 copied")
