"""The MySQL chunk reader against the real MariaDB: chunk rows equal streamed rows for every
type, keyset pagination over composite/binary/temporal keys, signal-table watermarks."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import mysql
from tests.support import mysql_workload as wl
from tideflow.connectors.sources.mysql import rowcodec
from tideflow.connectors.sources.mysql.config import MySQLSourceConfig
from tideflow.connectors.sources.mysql.snapshot import MySQLChunkReader
from tideflow.connectors.sources.mysql.source import MySQLSource
from tideflow.engine.snapshot import watermark
from tideflow.engine.snapshot.reader import SnapshotError, TablePlan
from tideflow.events import ChangeEvent, Message, Op, Record

pytestmark = pytest.mark.integration


@pytest.fixture
def db() -> Iterator[str]:
    with mysql.temp_database("tfsnapr") as name:
        yield name


def config(db: str, **keys: Any) -> MySQLSourceConfig:
    return MySQLSourceConfig.model_validate(
        mysql.source_config(**{"database.include.list.user.defined": db, **keys})
    )


def poll_until(src: MySQLSource, done: Any, timeout: float = 20.0) -> list[Record]:
    got: list[Record] = []
    deadline = time.monotonic() + timeout
    while not done(got):
        assert time.monotonic() < deadline, f"timed out; got {len(got)} records"
        got.extend(src.poll(0.3, 1000))
    return got


def read_all(reader: MySQLChunkReader, plan: TablePlan, size: int) -> list[dict[str, Any]]:
    """Every row through boundary + read_chunk, the way the coordinator pages."""
    rows: list[dict[str, Any]] = []
    after = None
    while True:
        upto = reader.boundary(plan, after, size, None)
        chunk = reader.read_chunk(plan, after, upto, None)
        rows += chunk.rows
        if upto is None:
            return rows
        assert chunk.last == upto
        after = upto


@pytest.mark.parametrize("decoder", ["fast", "library"])
def test_chunk_rows_equal_streamed_rows_for_every_type(
    db: str, tmp_path: Path, decoder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if decoder == "library":
        monkeypatch.setattr(rowcodec, "plan", lambda columns: None)
    mysql.execute(wl.TABLE.format(db=db))
    src = MySQLSource(config(db), name="src", state_dir=tmp_path / "state")
    src.open(None)
    try:
        rng = random.Random(3)
        with mysql.connect() as conn, conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = ''")
            for key in range(1, 301):
                wl.upsert(cur, db, wl.row_values(rng, key))
        got = poll_until(src, lambda g: sum(1 for r in g if isinstance(r, ChangeEvent)) >= 300)
    finally:
        src.close()
    streamed = {e.after["id"]: e for e in got if isinstance(e, ChangeEvent) and e.after}
    reader = MySQLChunkReader(config(db))
    try:
        plan = reader.plan(f"{db}.t", None)
        rows = read_all(reader, plan, 64)
    finally:
        reader.close()
    assert len(rows) == 300
    for row in rows:
        event = streamed[row["id"]]
        assert row == event.after, row["id"]
    assert plan.schema.columns == next(iter(streamed.values())).table.columns


KEYED_TABLES = {
    "int-varchar": (
        "a INT, b VARCHAR(10), PRIMARY KEY (a, b)",
        lambda i: (i % 37, f"k{i:05d}"),
    ),
    "binary": ("a VARBINARY(8), PRIMARY KEY (a)", lambda i: (i.to_bytes(4, "big") + b"\0",)),
    "datetime-unsigned": (
        "a DATETIME(6), b BIGINT UNSIGNED, PRIMARY KEY (a, b)",
        lambda i: (f"2024-01-01 00:00:{i % 60:02d}.{i:06d}", 2**64 - 1 - i),
    ),
    "decimal": ("a DECIMAL(20,5), PRIMARY KEY (a)", lambda i: (f"-{i}.12345",)),
}


@pytest.mark.parametrize("kind", list(KEYED_TABLES))
def test_keyset_pages_read_every_row_once_in_key_order(db: str, kind: str) -> None:
    ddl, values = KEYED_TABLES[kind]
    names = ["a", "b"][: len(values(0))]
    mysql.execute(f"CREATE TABLE `{db}`.k ({ddl}, v INT)")
    marks = ", ".join(["%s"] * (len(names) + 1))
    with mysql.connect() as conn, conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO `{db}`.k ({', '.join(names)}, v) VALUES ({marks})",
            [(*values(i), i) for i in range(1000)],
        )
    reader = MySQLChunkReader(config(db))
    try:
        plan = reader.plan(f"{db}.k", None)
        rows = read_all(reader, plan, 97)
    finally:
        reader.close()
    ordered = [r[0] for r in mysql.execute(f"SELECT v FROM `{db}`.k ORDER BY {', '.join(names)}")]
    assert [r["v"] for r in rows] == ordered
    assert sorted(r["v"] for r in rows) == list(range(1000))


def test_signal_rows_are_watermarks_never_data(db: str, tmp_path: Path) -> None:
    mysql.execute(f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY)")
    reader = MySQLChunkReader(config(db))
    src = MySQLSource(config(db), name="src", state_dir=tmp_path / "state")
    try:
        reader.plan(f"{db}.t", None)  # creates the signal table
        src.open(None)
        assert src.tables() == [f"{db}.t"]  # the signal table is not the source's table
        with pytest.raises(SnapshotError, match="signal table"):
            reader.plan(f"{db}.tideflow_signal", None)
        mark = watermark.Watermark("run:task:0", "low")
        reader.watermark(watermark.encode(mark))
        mysql.execute(f"INSERT INTO `{db}`.t VALUES (1)")
        got = poll_until(src, lambda g: any(isinstance(r, ChangeEvent) for r in g))
    finally:
        src.close()
        reader.close()
    marks = [watermark.decode(r) for r in got if isinstance(r, Message)]
    assert marks == [mark]
    assert [(e.table.name, e.op) for e in got if isinstance(e, ChangeEvent)] == [
        (f"{db}.t", Op.CREATE)
    ]
    assert mysql.execute(f"SELECT COUNT(*) FROM `{db}`.tideflow_signal")[0][0] == 0


def test_abandoned_blocking_scan_ends_at_once_and_the_reader_stays_usable(db: str) -> None:
    mysql.execute(
        f"CREATE TABLE `{db}`.k (id INT PRIMARY KEY, v VARCHAR(100))",
        f"INSERT INTO `{db}`.k SELECT seq, REPEAT('x', 100) FROM `{db}`.seq_1_to_200000",
    )
    reader = MySQLChunkReader(config(db))
    try:
        plan = reader.plan(f"{db}.k", None)
        batches = reader.scan(plan, None, 1000)
        assert len(next(batches)) == 1000
        started = time.monotonic()
        batches.close()  # a cancelled copy: the other 199,000 rows are not read
        assert time.monotonic() - started < 2.0
        assert sum(len(b) for b in reader.scan(plan, "id <= 5000", 1000)) == 5000
    finally:
        reader.close()
