"""The mysql destination against the real MariaDB from scripts/services/mariadb.sh."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests.support import mysql
from tideflow.connectors.destinations.mysql.config import MySQLDestinationConfig
from tideflow.connectors.destinations.mysql.destination import MySQLDestination
from tideflow.errors import TerminalError
from tideflow.events import UNCHANGED, Batch, ChangeEvent, Column, Op, TableSchema

pytestmark = pytest.mark.integration

Factory = Callable[..., MySQLDestination]

V1 = TableSchema(
    "app",
    "items",
    (
        Column("id", "int", "int", False, True),
        Column("name", "varchar(40)", "text"),
        Column("price", "numeric(12,2)", "decimal"),
    ),
    ("id",),
)
V2 = TableSchema(V1.schema, V1.table, (*V1.columns, Column("note", "text", "text")), ("id",), 2)


def ev(op: Op, schema: TableSchema, before: Any = None, after: Any = None) -> ChangeEvent:
    return ChangeEvent(op, schema, before, after, {"binlog_file": "x.000001", "binlog_pos": 4}, 0)


def batch(*events: ChangeEvent) -> Batch:
    return Batch(events=list(events), position={"binlog_file": "x.000001", "binlog_pos": 4})


@pytest.fixture
def dest_db() -> Iterator[str]:
    with mysql.temp_database("tfdst") as name:
        yield name


@pytest.fixture
def make_dest(dest_db: str) -> Iterator[Factory]:
    opened: list[MySQLDestination] = []

    def make(**keys: Any) -> MySQLDestination:
        config = MySQLDestinationConfig.model_validate(mysql.destination_config(dest_db, **keys))
        dest = MySQLDestination(config, name="dst")
        dest.open()
        opened.append(dest)
        return dest

    yield make
    for dest in opened:
        dest.close()


def rows(db: str, table: str = "items") -> list[tuple[Any, ...]]:
    return [tuple(r) for r in mysql.execute(f"SELECT * FROM `{db}`.`{table}` ORDER BY 1")]


def test_writes_upserts_and_deletes(dest_db: str, make_dest: Factory) -> None:
    dest = make_dest()
    dest.write(
        batch(
            ev(Op.CREATE, V1, after={"id": 1, "name": "a", "price": Decimal("1.50")}),
            ev(Op.CREATE, V1, after={"id": 2, "name": "b", "price": Decimal("2.00")}),
            ev(Op.CREATE, V1, after={"id": 3, "name": "c", "price": None}),
        )
    )
    dest.write(
        batch(
            ev(Op.UPDATE, V1, {"id": 2}, {"id": 2, "name": "B", "price": Decimal("2.25")}),
            ev(Op.DELETE, V1, before={"id": 3, "name": "c", "price": None}),
            ev(Op.UPDATE, V1, {"id": 1}, {"id": 10, "name": "a", "price": Decimal("1.50")}),
        )
    )
    assert rows(dest_db) == [(2, "B", Decimal("2.25")), (10, "a", Decimal("1.50"))]
    columns = mysql.execute(
        "SELECT COLUMN_NAME, COLUMN_TYPE, COLUMN_KEY FROM information_schema.COLUMNS "
        "WHERE TABLE_SCHEMA = %s ORDER BY ORDINAL_POSITION",
        args=(dest_db,),
    )
    assert [tuple(c) for c in columns] == [
        ("id", "bigint(20)", "PRI"),
        ("name", "varchar(40)", ""),
        ("price", "decimal(12,2)", ""),
    ]


def test_replayed_batches_are_idempotent(dest_db: str, make_dest: Factory) -> None:
    dest = make_dest()
    b = batch(
        *(ev(Op.CREATE, V1, after={"id": i, "name": f"n{i}", "price": i}) for i in range(1200)),
        ev(Op.UPDATE, V1, {"id": 5}, {"id": 5, "name": "five", "price": 5}),
        ev(Op.DELETE, V1, before={"id": 7}),
    )
    dest.write(b)
    first = mysql.table_checksum(dest_db, "items", "id, name, price")
    dest.write(b)
    dest.close()
    make_dest().write(b)  # a restarted writer replays the same batch
    assert mysql.table_checksum(dest_db, "items", "id, name, price") == first
    assert first[0] == 1199


def test_unchanged_values_keep_the_stored_value(dest_db: str, make_dest: Factory) -> None:
    dest = make_dest()
    dest.write(batch(ev(Op.CREATE, V1, after={"id": 1, "name": "kept", "price": 1})))
    dest.write(batch(ev(Op.UPDATE, V1, {"id": 1}, {"id": 1, "name": UNCHANGED, "price": 9})))
    assert rows(dest_db) == [(1, "kept", Decimal("9.00"))]


def test_schema_evolution_adds_columns(dest_db: str, make_dest: Factory) -> None:
    dest = make_dest()
    dest.write(batch(ev(Op.CREATE, V1, after={"id": 1, "name": "a", "price": 1})))
    dest.write(batch(ev(Op.CREATE, V2, after={"id": 2, "name": "b", "price": 2, "note": "new"})))
    assert rows(dest_db) == [(1, "a", Decimal("1.00"), None), (2, "b", Decimal("2.00"), "new")]


def test_schema_evolution_widens_columns_the_source_widened(
    dest_db: str, make_dest: Factory
) -> None:
    dest = make_dest()
    v1 = TableSchema(
        "app",
        "items",
        (
            Column("id", "int", "int", False, True),
            Column("name", "varchar(5)", "text"),
            Column("price", "decimal(4,2)", "decimal"),
            Column("tag", "binary(2)", "bytes"),
        ),
        ("id",),
    )
    dest.write(batch(ev(Op.CREATE, v1, after={"id": 1, "name": "a", "price": 1, "tag": b"ab"})))
    wide = (
        Column("id", "bigint unsigned", "decimal", False, True),
        Column("name", "varchar(400)", "text"),
        Column("price", "decimal(20,6)", "decimal"),
        Column("tag", "binary(8)", "bytes"),
    )
    v2 = TableSchema("app", "items", wide, ("id",), 2)
    big = {"id": 2**64 - 1, "name": "n" * 400, "price": Decimal("12345678901234.5")}
    big["tag"] = b"x" * 8
    dest.write(batch(ev(Op.CREATE, v2, after=big)))
    assert rows(dest_db) == [
        (1, "a", Decimal("1.000000"), b"ab"),
        (2**64 - 1, "n" * 400, Decimal("12345678901234.500000"), b"x" * 8),
    ]
    dest.write(batch(ev(Op.CREATE, v1, after={"id": 3, "name": "b", "price": 2, "tag": b"cd"})))
    assert len(rows(dest_db)) == 3  # an older shape (a replay) never narrows them again


def test_schema_evolution_none_drops_new_columns(dest_db: str, make_dest: Factory) -> None:
    dest = make_dest(**{"schema.evolution": "none"})
    dest.write(batch(ev(Op.CREATE, V1, after={"id": 1, "name": "a", "price": 1})))
    dest.write(batch(ev(Op.CREATE, V2, after={"id": 2, "name": "b", "price": 2, "note": "x"})))
    assert rows(dest_db) == [(1, "a", Decimal("1.00")), (2, "b", Decimal("2.00"))]


def test_every_kind_round_trips(dest_db: str, make_dest: Factory) -> None:
    cols = (
        Column("id", "bigint unsigned", "decimal", False, True),
        Column("i", "int", "int"),
        Column("f", "double", "float"),
        Column("b", "bit(1)", "bool"),
        Column("t", "text", "text"),
        Column("by", "blob", "bytes"),
        Column("d", "date", "date"),
        Column("tm", "time", "time"),
        Column("tmx", "time", "time"),
        Column("ts", "datetime(6)", "timestamp"),
        Column("tz", "timestamp(3)", "timestamptz"),
        Column("u", "uuid", "uuid"),
        Column("j", "json", "json"),
        Column("a", "int4[]", "array"),
        Column("e", "enum('x','y')", "enum"),
    )
    schema = TableSchema("app", "kinds", cols, ("id",))
    value = {
        "id": Decimal(18446744073709551615),
        "i": -(2**63),
        "f": 1.25,
        "b": True,
        "t": "héllo ✓",
        "by": b"\x00\xff",
        "d": date(2024, 2, 29),
        "tm": time(12, 30, 0, 500000),
        "tmx": "-838:59:59",
        "ts": datetime(2024, 1, 2, 3, 4, 5, 123456),
        "tz": datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=UTC),
        "u": "6f1c3a9e-8b1d-4c55-9a55-1b2f3c4d5e6f",
        "j": '{"a": 1}',
        "a": [1, 2],
        "e": "y",
    }
    make_dest().write(batch(ev(Op.CREATE, schema, after=value)))
    (row,) = rows(dest_db, "kinds")
    assert row[:7] == (
        Decimal(18446744073709551615),
        -(2**63),
        1.25,
        1,
        "héllo ✓",
        b"\x00\xff",
        date(2024, 2, 29),
    )
    # pymysql reads TIME back as a duration.
    assert row[7] == timedelta(hours=12, minutes=30, microseconds=500000)
    assert row[8] == -timedelta(hours=838, minutes=59, seconds=59)
    assert row[9] == datetime(2024, 1, 2, 3, 4, 5, 123456)
    assert row[10] == datetime(2024, 1, 2, 3, 4, 5, 123000)  # stored in UTC
    assert row[11:] == ("6f1c3a9e-8b1d-4c55-9a55-1b2f3c4d5e6f", '{"a": 1}', "[1, 2]", "y")


def test_insert_mode_appends_and_truncate_empties(dest_db: str, make_dest: Factory) -> None:
    dest = make_dest(**{"insert.mode": "insert"})
    dest.write(batch(ev(Op.CREATE, V1, after={"id": 1, "name": "a", "price": 1})))
    dest.write(batch(ev(Op.UPDATE, V1, {"id": 1}, {"id": 1, "name": "b", "price": 1})))
    assert [r[1] for r in rows(dest_db)] == ["a", "b"]
    dest.write(
        batch(
            ev(Op.TRUNCATE, V1),
            ev(Op.CREATE, V1, after={"id": 3, "name": "c", "price": 3}),
        )
    )
    assert [r[0] for r in rows(dest_db)] == [3]


def test_wrong_password_is_reported(dest_db: str) -> None:
    config = MySQLDestinationConfig.model_validate(
        mysql.destination_config(dest_db, **{"connection.password": "nope"})
    )
    dest = MySQLDestination(config, name="dst")
    problems = dest.preflight()
    assert [p.check for p in problems] == ["connect"]
    with pytest.raises(TerminalError):
        dest.open()
