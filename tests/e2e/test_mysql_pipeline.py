"""End to end through the live server: MariaDB → Postgres and MariaDB → MySQL, with faults.

Contents are compared in a normal form per column (``tests/support/mysql_workload.py``) over
the source's current columns: destinations keep dropped columns (left NULL), which is not a
difference.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from tests.support import api, mysql, pg
from tests.support import mysql_workload as wl
from tests.support.server import Server, wait_until

pytestmark = pytest.mark.integration

CHAOS_ROUNDS = int(os.environ.get("TIDEFLOW_CHAOS_ROUNDS", "2"))


@pytest.fixture
def dbs() -> Iterator[tuple[str, str, str]]:
    """(MariaDB source db with table t, Postgres destination db, MariaDB destination db)."""
    with (
        mysql.temp_database("tfsrc") as src,
        pg.temp_database("dst") as pg_dst,
        mysql.temp_database("tfdst") as my_dst,
    ):
        mysql.execute(wl.TABLE.format(db=src))
        yield src, pg_dst, my_dst


def start(
    server: Server, src: str, pg_dst: str | None, my_dst: str | None, **source_keys: Any
) -> dict[str, Any]:
    """Create the source and a pipeline to each given destination; wait for them to run."""
    out: dict[str, Any] = {}
    with server.client() as c:
        out["source"] = source = api.create(
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
        dests: list[tuple[str, str, dict[str, Any]]] = []
        if pg_dst is not None:
            dests.append(("pg", "postgresql", api.pg_destination_config(pg_dst)))
        if my_dst is not None:
            port = source_keys.get("database.port.user.defined", mysql.PORT)
            config = mysql.destination_config(my_dst, **{"database.port.user.defined": port})
            dests.append(("mysql", "mysql", config))
        for label, code, config in dests:
            dest = api.create(
                c,
                "/destinations",
                {"name": api.unique(label), "connector": code, "config": config},
            )
            out[label] = api.create_pipeline(c, source, dest)
    return out


def wait_running(server: Server, units: dict[str, Any]) -> None:
    with server.client() as c:
        api.wait_status(c, "sources", units["source"]["id"], "Active")
        for label in ("pg", "mysql"):
            if label in units:
                api.wait_status(c, "pipelines", units[label]["id"], "Active")


def assert_converges(
    src: str,
    pg_dst: str | None,
    my_dst: str | None,
    timeout: float = 120,
    port: int = mysql.PORT,
) -> None:
    """Wait for each destination to equal the source (MySQL destination on the same server)."""
    columns = wl.source_columns(src, port)
    expected = wl.source_rows(src, columns, port)
    reads = []
    if pg_dst is not None:
        reads.append(("postgres", lambda: wl.pg_rows(pg_dst, columns)))
    if my_dst is not None:
        reads.append(("mysql", lambda: wl.mysql_rows(my_dst, columns, port)))
    for name, read in reads:
        last: dict[Any, Any] = {}

        def same(read: Any = read) -> bool:
            nonlocal last
            last = read()
            return bool(last == expected)

        try:
            wait_until(same, timeout, interval=0.5, what=f"{name} to equal the source")
        except AssertionError:
            diff = [k for k in set(expected) | set(last) if expected.get(k) != last.get(k)]
            k = sorted(diff)[0] if diff else None
            raise AssertionError(
                f"{name}: {len(diff)} rows differ, e.g. id {k}: source {expected.get(k)} "
                f"vs {last.get(k)} (source {wl.digest(expected)}, {name} {wl.digest(last)})"
            ) from None


def test_every_type_and_ddl_land_identically_in_postgres_and_mysql(
    dbs: tuple[str, str, str], engine_server: Server
) -> None:
    src, pg_dst, my_dst = dbs
    wait_running(engine_server, start(engine_server, src, pg_dst, my_dst))
    rng = random.Random(7)
    wl.random_ops(src, rng, 300, keys=400)
    mysql.execute(f"ALTER TABLE `{src}`.`t` ADD COLUMN extra INT NULL")
    wl.random_ops(src, rng, 150, keys=400, extra=True)
    # A wider column in the binlog: the table map must be decoded with the new shape, and
    # destinations must take values that only fit the widened types. (Not BINARY(n): the
    # server re-pads stored values without row events, which no binlog reader can see.)
    mysql.execute(
        f"ALTER TABLE `{src}`.`t` MODIFY si INT, MODIFY vc VARCHAR(400), "
        "MODIFY c VARCHAR(20), MODIFY vb VARBINARY(20)"
    )
    wl.random_ops(src, rng, 150, keys=400, extra=True)
    mysql.execute(
        f"UPDATE `{src}`.`t` SET vc = REPEAT('w', 390), c = 'twenty chars long!!', "
        "vb = REPEAT(0x01, 20) WHERE id % 7 = 0"
    )
    mysql.execute(f"ALTER TABLE `{src}`.`t` DROP COLUMN tx")
    wl.random_ops(src, rng, 150, keys=400, extra=True)
    assert len(wl.source_rows(src, ["id"])) > 100
    assert_converges(src, pg_dst, my_dst)


def test_ddl_under_load_lands_identically_in_postgres_and_mysql(
    dbs: tuple[str, str, str], engine_server: Server
) -> None:
    """The same DDL while a writer keeps committing: batches straddle every shape change."""
    src, pg_dst, my_dst = dbs
    wait_running(engine_server, start(engine_server, src, pg_dst, my_dst))
    wl.random_ops(src, random.Random(21), 100, keys=400)
    stop = threading.Event()

    def write() -> None:
        rng = random.Random(22)
        while not stop.is_set():
            # A statement may name a column a DDL just dropped: the next call re-reads them.
            with contextlib.suppress(pymysql.err.MySQLError):
                wl.random_ops(src, rng, 5, keys=400, extra=True)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for ddl in (
            "ADD COLUMN extra INT NULL",
            "MODIFY si INT, MODIFY vc VARCHAR(400)",
            "DROP COLUMN tx",
            # No DEFAULT: the server fills existing rows without row events (no CDC sees it).
            "ADD COLUMN tail VARCHAR(10) NULL",
        ):
            threading.Event().wait(1.0)
            mysql.execute(f"ALTER TABLE `{src}`.`t` {ddl}")
        threading.Event().wait(1.0)
    finally:
        stop.set()
        writer.join()
    assert_converges(src, pg_dst, my_dst)


# A private MariaDB for the restart test: restarting the shared one disturbs other tests.
RESTART_PORT = 3327


def load(src: str, stop: threading.Event, seed: int, port: int) -> None:
    """Random transactions until ``stop``; rides out a server restart."""
    rng = random.Random(seed)
    while not stop.is_set():
        try:
            wl.random_ops(src, rng, 20, keys=3000, port=port)
        except pymysql.err.MySQLError:
            time.sleep(0.5)  # the server is restarting: a lost transaction never committed


def test_survives_kill9_and_mariadb_restart(engine_server: Server) -> None:
    with (
        mysql.scratch(*mysql.BINLOG_OPTIONS, port=RESTART_PORT) as maria,
        pg.temp_database("dst") as pg_dst,
    ):
        # Source and MySQL destination on the restarted server, as in a one-server setup.
        src, my_dst = "src", "dst"
        mysql.execute_on(maria.port, f"CREATE DATABASE {src}", wl.TABLE.format(db=src))
        units = start(
            engine_server, src, pg_dst, my_dst, **{"database.port.user.defined": maria.port}
        )
        wait_running(engine_server, units)
        stop = threading.Event()
        writer = threading.Thread(target=load, args=(src, stop, 11, maria.port))
        writer.start()
        try:
            for _ in range(CHAOS_ROUNDS):
                threading.Event().wait(random.uniform(1.5, 4.0))
                engine_server.kill9()
                engine_server.start()
            threading.Event().wait(2)
            maria.restart()
            threading.Event().wait(3)
        finally:
            stop.set()
            writer.join()
        wl.random_ops(src, random.Random(12), 50, keys=3000, port=maria.port)
        assert_converges(src, pg_dst, my_dst, timeout=180, port=maria.port)
        with engine_server.client() as c:
            assert api.status(c, "sources", units["source"]["id"]) == "Active"


def broken_message(server: Server, units: dict[str, Any], timeout: float = 60) -> str:
    """Wait for the source to be Broken; return the message the API shows for it."""
    with server.client() as c:
        api.wait_status(c, "sources", units["source"]["id"], "Broken", timeout)
        shown = c.get(f"/sources/{units['source']['id']}").json()["result"][0]
    assert shown["connector_status"] == "Broken"
    return str(shown["connector_status_message"])


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (("--skip-log-bin",), "binary log is disabled"),
        (
            ("--log-bin=b", "--server-id=1", "--binlog-format=STATEMENT"),
            "binlog_format is STATEMENT",
        ),
    ],
    ids=["binlog-off", "statement-format"],
)
def test_unusable_binlog_breaks_the_source_with_a_clear_message(
    engine_server: Server, options: tuple[str, ...], words: str
) -> None:
    with mysql.scratch_server(*options, port=3318) as port:
        mysql.execute_on(port, "CREATE DATABASE d", "CREATE TABLE d.t (id INT PRIMARY KEY)")
        with pg.temp_database("dst") as pg_dst:
            units = start(engine_server, "d", pg_dst, None, **{"database.port.user.defined": port})
            assert words in broken_message(engine_server, units)


def test_missing_privileges_break_the_source_with_a_clear_message(
    dbs: tuple[str, str, str], engine_server: Server
) -> None:
    src, pg_dst, _ = dbs
    user = "tf_e2e_noreplica"
    mysql.execute(
        f"DROP USER IF EXISTS '{user}'@'127.0.0.1'",
        f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw'",
        f"GRANT SELECT ON `{src}`.* TO '{user}'@'127.0.0.1'",
    )
    try:
        units = start(
            engine_server, src, pg_dst, None, **{"database.user": user, "database.password": "pw"}
        )
        message = broken_message(engine_server, units)
    finally:
        mysql.execute(f"DROP USER '{user}'@'127.0.0.1'")
    assert "access denied" in message.lower() or "REPLICATION" in message, message


def purge_all_but_newest(timeout: float = 30.0) -> None:
    newest = mysql.execute("SHOW MASTER STATUS")[0][0]
    deadline = time.monotonic() + timeout
    while True:
        mysql.execute(f"PURGE BINARY LOGS TO '{newest}'")
        if mysql.execute("SHOW BINARY LOGS")[0][0] == newest:
            return
        assert time.monotonic() < deadline, "binlogs were not purged"
        time.sleep(0.2)


def test_purged_binlog_breaks_the_source_with_a_clear_message(
    dbs: tuple[str, str, str], engine_server: Server
) -> None:
    src, pg_dst, _ = dbs
    units = start(engine_server, src, pg_dst, None)
    wait_running(engine_server, units)
    wl.random_ops(src, random.Random(3), 20, keys=50)
    assert_converges(src, pg_dst, None)
    source_id = units["source"]["id"]
    with engine_server.client() as c:
        assert c.post(f"/sources/{source_id}/pause").status_code == 200
        api.wait_status(c, "sources", source_id, "Paused")
    wl.random_ops(src, random.Random(4), 20, keys=50)  # lands in the binlog that is purged
    mysql.execute("FLUSH BINARY LOGS")
    purge_all_but_newest()
    with engine_server.client() as c:
        assert c.post(f"/sources/{source_id}/resume").status_code == 200
    message = broken_message(engine_server, units)
    # Worded per how the gap was found (purged file, or GTID state older than the oldest log).
    assert "Re-snapshot" in message, message
    assert "POST /sources/snapshot" in message, message
    assert "purged" in message or "no longer in the binlog" in message, message
