"""The mysql/mariadb source reading across a restart of its server (a private MariaDB).

Table ids in row events only hold within one server run: after a restart the server numbers
tables afresh, so a reader that resumes before the restart and crosses into the new binlog
must not take another table's rows for a captured table that had the same id before.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import mysql
from tideflow.connectors.sources.mysql.config import MySQLSourceConfig
from tideflow.connectors.sources.mysql.source import MySQLSource
from tideflow.events import ChangeEvent, Record

pytestmark = pytest.mark.integration

PORT = 3331


@pytest.fixture
def maria() -> Iterator[mysql.ScratchServer]:
    with mysql.scratch(*mysql.BINLOG_OPTIONS, port=PORT) as server:
        yield server


def poll_until_quiet(src: MySQLSource, timeout: float = 20.0) -> list[Record]:
    """Everything the source has: poll until a poll returns nothing after something came."""
    got: list[Record] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = src.poll(0.5, 500)
        if not records and any(isinstance(r, ChangeEvent) for r in got):
            return got
        got.extend(records)
    raise AssertionError(f"no changes within {timeout}s: {got!r}")


def table_id(port: int, db: str, table: str, binlog: str) -> int:
    """The id of ``db.table`` in the table maps of one binlog file."""
    for row in mysql.execute_on(port, f"SHOW BINLOG EVENTS IN '{binlog}'"):
        if row[2] == "Table_map" and str(row[5]).endswith(f"({db}.{table})"):
            return int(str(row[5]).split()[1])
    raise AssertionError(f"no table map of {db}.{table} in {binlog}")


@pytest.mark.parametrize("by_gtid", ["Yes", "No"], ids=["by-gtid", "by-file-position"])
def test_rows_of_other_tables_are_not_taken_for_captured_ones_after_a_restart(
    maria: mysql.ScratchServer, tmp_path: Path, by_gtid: str
) -> None:
    others = [f"b.u{i}" for i in range(40)]
    mysql.execute_on(
        maria.port,
        "CREATE DATABASE a",
        "CREATE TABLE a.t (id INT PRIMARY KEY, v VARCHAR(20))",
        "CREATE DATABASE b",
        *(f"CREATE TABLE {u} (id BIGINT PRIMARY KEY, x DOUBLE, y VARCHAR(20))" for u in others),
    )
    keys = {
        "database.port.user.defined": maria.port,
        "table.include.list.user.defined": "a.t",
        "snapshot.gtid": by_gtid,
    }
    config = MySQLSourceConfig.model_validate(mysql.source_config(**keys))

    def source() -> MySQLSource:
        return MySQLSource(config, name="restart", state_dir=tmp_path / "state")

    file, pos = mysql.execute_on(maria.port, "SHOW MASTER STATUS")[0][:2]
    gtid = mysql.execute_on(maria.port, "SELECT @@GLOBAL.gtid_binlog_pos")[0][0]
    start = {"binlog_file": file, "binlog_pos": pos, "gtid": gtid}
    mysql.execute_on(maria.port, "INSERT INTO a.t VALUES (1, 'before')")
    maria.restart()
    # Ids are numbered afresh: one of these tables now has the id a.t had before.
    mysql.execute_on(
        maria.port,
        *(f"INSERT INTO {u} VALUES (10, 1.5, 'other')" for u in others),
        "INSERT INTO a.t VALUES (2, 'after')",
    )
    assert table_id(maria.port, "a", "t", start["binlog_file"]) in {
        table_id(
            maria.port, *u.split("."), mysql.execute_on(maria.port, "SHOW MASTER STATUS")[0][0]
        )
        for u in others
    }, "no table id was reused: the test proves nothing"

    src = source()
    src.open(start)  # the reader sees a.t's old table map, then crosses into the new binlog
    try:
        events = [r for r in poll_until_quiet(src) if isinstance(r, ChangeEvent)]
    finally:
        src.close()
    assert [(e.table.name, e.after) for e in events] == [
        ("a.t", {"id": 1, "v": "before"}),
        ("a.t", {"id": 2, "v": "after"}),
    ]
