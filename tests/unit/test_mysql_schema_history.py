"""The schema history file: shapes by binlog position, replays, format version."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tideflow.connectors.sources.mysql.position import BinlogPosition
from tideflow.connectors.sources.mysql.schema_history import SchemaHistory
from tideflow.errors import TerminalError
from tideflow.events import Column, TableSchema


def shape(version: int, *names: str) -> TableSchema:
    extra = tuple(Column(n, "varchar(5)", "text") for n in names)
    cols = (Column("id", "int", "int", False, True), *extra)
    return TableSchema("db", "t", cols, ("id",), version)


def pos(file: int, offset: int) -> BinlogPosition:
    return BinlogPosition(f"mariadb-bin.{file:06d}", offset)


def test_shapes_by_position(tmp_path: Path) -> None:
    h = SchemaHistory(tmp_path / "h.sqlite")
    h.record(pos(1, 100), "db", "t", shape(1, "a"))
    h.record(pos(1, 500), "db", "t", shape(2, "a", "b"))
    h.record(pos(2, 50), "db", "t", None)  # dropped
    assert h.at(pos(1, 99)) == {}
    assert h.at(pos(1, 100))[("db", "t")] == shape(1, "a")
    assert h.at(pos(1, 499))[("db", "t")].version == 1
    assert h.at(pos(1, 10_000))[("db", "t")] == shape(2, "a", "b")
    assert h.at(pos(2, 50)) == {}
    # File sequence numbers order files, not their names' text.
    h.record(pos(10, 4), "db", "t", shape(3, "c"))
    assert h.at(pos(10, 4))[("db", "t")].version == 3
    assert h.latest_version("db", "t") == 3


def test_replayed_records_keep_the_first_and_survive_reopen(tmp_path: Path) -> None:
    h = SchemaHistory(tmp_path / "h.sqlite")
    h.record(pos(1, 100), "db", "t", shape(1, "a"))
    h.record(pos(1, 100), "db", "t", shape(7, "zzz"))
    assert h.exact(pos(1, 100), "db", "t") == (True, shape(1, "a"))
    assert h.exact(pos(1, 101), "db", "t") == (False, None)
    h.close()
    again = SchemaHistory(tmp_path / "h.sqlite", "hex")
    got = again.at(pos(1, 100))[("db", "t")]
    assert got.columns == shape(1, "a").columns  # kinds recomputed; text stays text


def test_unknown_format_is_refused(tmp_path: Path) -> None:
    SchemaHistory(tmp_path / "h.sqlite").close()
    with sqlite3.connect(tmp_path / "h.sqlite") as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'format'")
    with pytest.raises(TerminalError, match="format 99"):
        SchemaHistory(tmp_path / "h.sqlite")
