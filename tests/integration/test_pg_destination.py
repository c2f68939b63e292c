"""PostgresDestination against a real Postgres: hand-built change events → destination tables."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from tests.support import pg
from tideflow.connectors.destinations.postgres.config import PostgresDestinationConfig
from tideflow.connectors.destinations.postgres.destination import PostgresDestination
from tideflow.engine.errors import PoisonRecord
from tideflow.envelope import SourceInfo
from tideflow.errors import TerminalError, TransientError
from tideflow.events import UNCHANGED, Batch, ChangeEvent, Column, Op, TableSchema

pytestmark = pytest.mark.integration

ITEMS = TableSchema(
    "shop",
    "items",
    (
        Column("id", "int4", "int", False, True),
        Column("name", "varchar(20)", "text"),
        Column("price", "numeric(7,2)", "decimal"),
        Column("notes", "text", "text"),
    ),
    ("id",),
)


@pytest.fixture
def dbname() -> Iterator[str]:
    with pg.temp_database("tfdst") as name:
        yield name


def config(dbname: str, **extra: Any) -> PostgresDestinationConfig:
    values = {
        "database.hostname.user.defined": pg.HOST,
        "database.port.user.defined": pg.PORT,
        "database.database.user.defined": dbname,
        "connection.username": pg.USER,
        "connection.password": pg.PASSWORD,
        "table.name.prefix": "dst",
        "database.sslmode": "disable",
    }
    values.update(extra)
    return PostgresDestinationConfig.model_validate(values)


@contextmanager
def destinations(dbname: str) -> Iterator[Callable[..., PostgresDestination]]:
    """Opens destinations on ``dbname`` (config overrides as keywords; ``fence=(unit,
    generation)`` fences one before it opens) and closes them all on exit."""
    opened: list[PostgresDestination] = []

    def factory(fence: tuple[str, int] | None = None, **extra: Any) -> PostgresDestination:
        d = PostgresDestination(config(dbname, **extra), name="test")
        d.bind_source(SourceInfo("postgresql", "src", "srcdb"))
        if fence is not None:
            d.fence(*fence)
        d.open()
        opened.append(d)
        return d

    try:
        yield factory
    finally:
        for d in opened:
            d.close()


@pytest.fixture
def make(dbname: str) -> Iterator[Any]:
    with destinations(dbname) as factory:
        yield factory


class Events:
    """Builds events with increasing positions, like a source would."""

    def __init__(self) -> None:
        self.lsn = 100

    def __call__(
        self,
        op: Op,
        table: TableSchema,
        after: dict[str, Any] | None = None,
        before: dict[str, Any] | None = None,
    ) -> ChangeEvent:
        self.lsn += 10
        return ChangeEvent(
            op, table, before, after, {"lsn": self.lsn}, 1_700_000_000_000 + self.lsn, txid=self.lsn
        )

    def batch(self, *events: ChangeEvent) -> Batch:
        return Batch(list(events), {"lsn": self.lsn + 1})


def rows(dbname: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(pg.dsn(dbname)) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        return conn.execute(sql).fetchall()


def item(i: int, name: str = "n", price: str = "1.00", notes: Any = "note") -> dict[str, Any]:
    return {"id": i, "name": f"{name}{i}", "price": Decimal(price), "notes": notes}


ALL = TableSchema(
    "public",
    "all_kinds",
    (
        Column("id", "int8", "int", False, True),
        Column("i2", "int2", "int"),
        Column("i4", "int4", "int"),
        Column("f4", "float4", "float"),
        Column("f8", "float8", "float"),
        Column("num", "numeric(12,3)", "decimal"),
        Column("anynum", "numeric", "decimal"),
        Column("b", "bool", "bool"),
        Column("t", "text", "text"),
        Column("vc", "varchar(5)", "text"),
        Column("by", "bytea", "bytes"),
        Column("d", "date", "date"),
        Column("tm", "time", "time"),
        Column("ttz", "timetz", "timetz"),
        Column("ts", "timestamp", "timestamp"),
        Column("tstz", "timestamptz(3)", "timestamptz"),
        Column("iv", "interval", "interval"),
        Column("u", "uuid", "uuid"),
        Column("j", "json", "json"),
        Column("jb", "jsonb", "json"),
        Column("ia", "int4[]", "array"),
        Column("ta", "text[]", "array"),
        Column("na", "numeric(5,2)[]", "array"),
        Column("e", "mood", "enum"),
        Column("inet", "inet", "other"),
        Column("money", "money", "other"),
        Column("bits", "bit(4)", "other"),
        Column("weird", "public.geometry", "other"),
    ),
    ("id",),
)

ALL_ROW: dict[str, Any] = {
    "id": 1,
    "i2": -32768,
    "i4": 2147483647,
    "f4": 1.5,
    "f8": float("nan"),
    "num": Decimal("123456789.125"),
    "anynum": Decimal("1e-20"),
    "b": True,
    "t": "tab\tnew\nline\\",
    "vc": "hello",
    "by": b"\x00\x01\xff",
    "d": dt.date(2024, 2, 29),
    "tm": dt.time(23, 59, 59, 999999),
    "ttz": "10:11:12+02",
    "ts": dt.datetime(1999, 12, 31, 23, 59, 59),
    "tstz": dt.datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=dt.UTC),
    "iv": "P1Y2M3DT4H5M6S",
    "u": str(uuid.UUID(int=7)),
    "j": '{"a": [1, 2]}',
    "jb": '{"b": {"c": null}}',
    "ia": [1, None, 3],
    "ta": ["a,b", 'q"uote', None, ""],
    "na": [Decimal("1.50")],
    "e": "happy",
    "inet": "10.1.2.3/32",
    "money": "$12.34",
    "bits": "1010",
    "weird": "POINT(1 2)",
}


def test_every_kind_lands_with_a_compatible_type(make: Any, dbname: str) -> None:
    ev = Events()
    make().write(ev.batch(ev(Op.READ, ALL, ALL_ROW)))
    types = dict(
        rows(
            dbname,
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'dst' AND table_name = 'all_kinds'",
        )
    )
    assert types["i2"] == "smallint" and types["i4"] == "integer" and types["id"] == "bigint"
    assert (
        types["num"] == "numeric"
        and types["j"] == "jsonb"
        and types["tstz"].startswith("timestamp with time zone")
    )
    assert types["ia"] == "ARRAY" and types["inet"] == "inet" and types["money"] == "money"
    assert types["weird"] == "text" and types["e"] == "text" and types["u"] == "uuid"
    assert types["__source_ts_ms"] == "bigint" and types["__source_lsn"] == "bigint"
    formatted = dict(
        rows(
            dbname,
            "SELECT attname, format_type(atttypid, atttypmod) "
            "FROM pg_attribute WHERE attrelid = 'dst.all_kinds'::regclass "
            "AND attnum > 0",
        )
    )
    assert formatted["num"] == "numeric(12,3)" and formatted["na"] == "numeric(5,2)[]"
    assert formatted["bits"] == "bit(4)" and formatted["ia"] == "integer[]"
    (got,) = rows(
        dbname,
        "SELECT id, i2, i4, f4, f8::text, num, anynum, b, t, vc, by, d, tm, "
        "ttz::text, ts, tstz, iv::text, u::text, j, jb, ia, ta, na, e, "
        "inet::text, money::text, bits::text, weird FROM dst.all_kinds",
    )
    assert got == (
        1,
        -32768,
        2147483647,
        1.5,
        "NaN",
        Decimal("123456789.125"),
        Decimal("1e-20"),
        True,
        "tab\tnew\nline\\",
        "hello",
        b"\x00\x01\xff",
        dt.date(2024, 2, 29),
        dt.time(23, 59, 59, 999999),
        "10:11:12+02",
        dt.datetime(1999, 12, 31, 23, 59, 59),
        dt.datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=dt.UTC),
        "1 year 2 mons 3 days 04:05:06",
        str(uuid.UUID(int=7)),
        {"a": [1, 2]},
        {"b": {"c": None}},
        [1, None, 3],
        ["a,b", 'q"uote', None, ""],
        [Decimal("1.50")],
        "happy",
        "10.1.2.3/32",
        "$12.34",
        "1010",
        "POINT(1 2)",
    )
    (meta,) = rows(dbname, "SELECT __source_ts_ms, __source_lsn FROM dst.all_kinds")
    assert meta == (1_700_000_000_110, 110)


def test_upsert_mode_reduces_per_key_and_applies_deletes(make: Any, dbname: str) -> None:
    ev, dest = Events(), make()
    dest.write(ev.batch(*(ev(Op.CREATE, ITEMS, item(i)) for i in range(1, 6))))
    dest.write(
        ev.batch(
            ev(Op.UPDATE, ITEMS, item(1, "a")),
            ev(Op.UPDATE, ITEMS, item(1, "b")),
            ev(Op.DELETE, ITEMS, before={"id": 2}),
            ev(Op.DELETE, ITEMS, before={"id": 3}),
            ev(Op.CREATE, ITEMS, item(3, "again")),
            ev(Op.UPDATE, ITEMS, item(40, "moved"), before={"id": 4}),  # key change 4 → 40
        )
    )
    assert rows(dbname, "SELECT id, name FROM dst.items ORDER BY id") == [
        (1, "b1"),
        (3, "again3"),
        (5, "n5"),
        (40, "moved40"),
    ]


def test_insert_mode_appends_every_change(make: Any, dbname: str) -> None:
    ev, dest = Events(), make(**{"insert.mode": "insert"})
    dest.write(
        ev.batch(
            ev(Op.CREATE, ITEMS, item(1)),
            ev(Op.UPDATE, ITEMS, item(1, "x")),
            ev(Op.CREATE, ITEMS, item(2)),
        )
    )
    dest.write(ev.batch(ev(Op.DELETE, ITEMS, before={"id": 2})))
    assert rows(dbname, "SELECT id, name FROM dst.items ORDER BY __source_lsn") == [
        (1, "n1"),
        (1, "x1"),
    ]
    assert rows(
        dbname,
        "SELECT count(*) FROM pg_index WHERE indrelid = 'dst.items'::regclass AND indisprimary",
    ) == [(0,)]


def test_soft_deletes_mark_rows(make: Any, dbname: str) -> None:
    ev, dest = Events(), make(**{"delete.soft.user.defined": True})
    dest.write(ev.batch(ev(Op.CREATE, ITEMS, item(1)), ev(Op.CREATE, ITEMS, item(2))))
    dest.write(
        ev.batch(ev(Op.DELETE, ITEMS, before={"id": 1}), ev(Op.DELETE, ITEMS, before={"id": 9}))
    )
    assert rows(dbname, "SELECT id, name, __deleted FROM dst.items ORDER BY id") == [
        (1, "n1", True),
        (2, "n2", False),
        (9, None, True),
    ]
    dest.write(ev.batch(ev(Op.CREATE, ITEMS, item(1, "back"))))
    assert rows(dbname, "SELECT name, __deleted FROM dst.items WHERE id = 1") == [("back1", False)]


def test_deletes_can_be_ignored(make: Any, dbname: str) -> None:
    ev, dest = Events(), make(**{"delete.enabled": False})
    dest.write(ev.batch(ev(Op.CREATE, ITEMS, item(1)), ev(Op.DELETE, ITEMS, before={"id": 1})))
    assert rows(dbname, "SELECT id FROM dst.items") == [(1,)]


def test_schema_evolution_adds_columns_mid_stream(make: Any, dbname: str) -> None:
    ev, dest = Events(), make()
    v2 = TableSchema(
        "shop", "items", (*ITEMS.columns, Column("stock", "int8", "int")), ("id",), version=2
    )
    v3 = TableSchema(
        "shop", "items", tuple(c for c in v2.columns if c.name != "notes"), ("id",), version=3
    )
    dest.write(ev.batch(ev(Op.CREATE, ITEMS, item(1)), ev(Op.CREATE, v2, {**item(2), "stock": 5})))
    dest.write(ev.batch(ev(Op.CREATE, v3, {"id": 3, "name": "c", "price": Decimal(1), "stock": 9})))
    assert rows(dbname, "SELECT id, notes, stock FROM dst.items ORDER BY id") == [
        (1, "note", None),
        (2, "note", 5),
        (3, None, 9),
    ]


def test_schema_evolution_none_refuses_new_columns(make: Any) -> None:
    ev, dest = Events(), make(**{"schema.evolution": "none"})
    dest.write(ev.batch(ev(Op.CREATE, ITEMS, item(1))))
    v2 = TableSchema(
        "shop", "items", (*ITEMS.columns, Column("stock", "int8", "int")), ("id",), version=2
    )
    with pytest.raises(TerminalError, match="stock"):
        dest.write(ev.batch(ev(Op.CREATE, v2, {**item(2), "stock": 5})))


def test_unchanged_values_are_merged_or_left_as_they_are(make: Any, dbname: str) -> None:
    ev, dest = Events(), make()
    dest.write(
        ev.batch(
            ev(Op.CREATE, ITEMS, item(1, notes="BIG-1")),
            ev(Op.CREATE, ITEMS, item(2, notes="BIG-2")),
        )
    )
    dest.write(
        ev.batch(
            # only an UNCHANGED update: the destination keeps its value
            ev(Op.UPDATE, ITEMS, {**item(1, "x"), "notes": UNCHANGED}),
            # an earlier change in the batch knows the value: it is merged
            ev(Op.UPDATE, ITEMS, item(2, "y", notes="NEW-2")),
            ev(Op.UPDATE, ITEMS, {**item(2, "z"), "notes": UNCHANGED}),
            # a row the destination does not have: never created with a made-up value
            ev(Op.UPDATE, ITEMS, {**item(3, "w"), "notes": UNCHANGED}),
        )
    )
    assert rows(dbname, "SELECT id, name, notes FROM dst.items ORDER BY id") == [
        (1, "x1", "BIG-1"),
        (2, "z2", "NEW-2"),
    ]


def test_truncate(make: Any, dbname: str) -> None:
    ev, dest = Events(), make()
    dest.write(ev.batch(ev(Op.CREATE, ITEMS, item(1))))
    dest.write(
        ev.batch(
            ev(Op.CREATE, ITEMS, item(2)), ev(Op.TRUNCATE, ITEMS), ev(Op.CREATE, ITEMS, item(3))
        )
    )
    assert rows(dbname, "SELECT id FROM dst.items") == [(3,)]


def test_keyless_tables_mirror_updates_and_deletes(make: Any, dbname: str) -> None:
    log = TableSchema("shop", "log", (Column("a", "int4", "int"), Column("j", "json", "json")), ())
    ev, dest = Events(), make()
    dest.write(
        ev.batch(ev(Op.CREATE, log, {"a": 1, "j": "[1]"}), ev(Op.CREATE, log, {"a": 2, "j": "[2]"}))
    )
    dest.write(
        ev.batch(
            ev(Op.UPDATE, log, {"a": 3, "j": "[3]"}, before={"a": 1, "j": "[1]"}),
            ev(Op.DELETE, log, before={"a": 2, "j": "[2]"}),
        )
    )
    assert rows(dbname, "SELECT a FROM dst.log") == [(3,)]


def test_record_value_key_and_no_metadata(make: Any, dbname: str) -> None:
    ev = Events()
    dest = make(
        **{
            "primary.key.mode": "record_value",
            "primary.key.fields": "name",
            "metadata.columns.user.defined": False,
        }
    )
    dest.write(
        ev.batch(
            ev(Op.CREATE, ITEMS, item(1, "same", notes="a")),
            ev(Op.CREATE, ITEMS, {**item(2, "same"), "name": "same1"}),
        )
    )
    assert rows(dbname, "SELECT id, name FROM dst.items") == [(2, "same1")]
    cols = [
        r[0]
        for r in rows(
            dbname, "SELECT column_name FROM information_schema.columns WHERE table_name = 'items'"
        )
    ]
    assert "__source_lsn" not in cols


def test_replaying_batches_is_idempotent(make: Any, dbname: str) -> None:
    ev, dest = Events(), make()
    batches = [
        ev.batch(*(ev(Op.CREATE, ITEMS, item(i)) for i in range(50))),
        ev.batch(
            *(ev(Op.UPDATE, ITEMS, item(i, "u", "2.00")) for i in range(0, 50, 2)),
            ev(Op.DELETE, ITEMS, before={"id": 7}),
            ev(Op.UPDATE, ITEMS, {**item(9, "t"), "notes": UNCHANGED}),
        ),
        ev.batch(ev(Op.CREATE, ITEMS, item(7, "re")), ev(Op.DELETE, ITEMS, before={"id": 8})),
    ]
    for b in batches:
        dest.write(b)
    before = pg.table_checksum(dbname, "dst.items", order_by="id")
    for b in batches:  # a restart replays from an older checkpoint: no visible effect
        dest.write(b)
    assert pg.table_checksum(dbname, "dst.items", order_by="id") == before
    assert before[0] == 49
    # Replaying from an older position: the position guard keeps newer rows from going back
    # while the replay is under way, and the replay converges to the same table.
    dest.write(batches[0])
    assert rows(dbname, "SELECT name FROM dst.items WHERE id IN (0, 2) ORDER BY id") == [
        ("u0",),
        ("u2",),
    ]
    for b in batches[1:]:
        dest.write(b)
    assert pg.table_checksum(dbname, "dst.items", order_by="id") == before


def test_a_batch_is_all_or_nothing_and_poison_names_table_and_key(make: Any, dbname: str) -> None:
    ev, dest = Events(), make()
    dest.write(ev.batch(ev(Op.CREATE, ITEMS, item(1))))
    bad = ev(Op.CREATE, ITEMS, item(13, price="123456.00"))  # numeric(7,2) overflow
    batch = ev.batch(ev(Op.CREATE, ITEMS, item(12)), bad, ev(Op.CREATE, ITEMS, item(14)))
    with pytest.raises(PoisonRecord) as info:
        dest.write(batch)
    assert "shop.items" in info.value.message and "id=13" in info.value.message
    assert "numeric field overflow" in info.value.message
    assert [letter.event for letter in info.value.letters] == [bad]
    assert rows(dbname, "SELECT id FROM dst.items") == [(1,)]  # nothing of the batch
    dest.write_dead_letters(info.value.letters)
    dest.write_dead_letters(info.value.letters)  # a replay: no duplicate
    dest.write(Batch([e for e in batch.events if e is not bad], batch.position))
    assert rows(dbname, "SELECT id FROM dst.items ORDER BY id") == [(1,), (12,), (14,)]
    (letter,) = rows(
        dbname,
        "SELECT source_table, record_key, position, op, error, event "
        "FROM dst.tideflow_dead_letters",
    )
    assert letter[:4] == ("shop.items", [13], {"lsn": bad.position["lsn"]}, "c")
    assert "numeric field overflow" in letter[4]
    assert letter[5]["after"]["price"] == "123456.00"
    assert letter[5]["source"]["name"] == "src"


def test_connection_killed_under_it_is_transient_and_the_batch_rewrites(
    make: Any, dbname: str
) -> None:
    ev, dest = Events(), make()
    dest.write(ev.batch(ev(Op.CREATE, ITEMS, item(1))))
    with psycopg.connect(pg.dsn(), autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = 'tideflow:test'",
            (dbname,),
        )
    batch = ev.batch(ev(Op.CREATE, ITEMS, item(2)), ev(Op.UPDATE, ITEMS, item(1, "x")))
    with pytest.raises(TransientError):
        dest.write(batch)
    dest.close()
    dest.open()  # what the runtime does before re-writing the same batch
    dest.write(batch)
    assert rows(dbname, "SELECT id, name FROM dst.items ORDER BY id") == [(1, "x1"), (2, "n2")]


def test_table_dropped_under_it_is_recreated_on_retry(make: Any, dbname: str) -> None:
    ev, dest = Events(), make()
    dest.write(ev.batch(ev(Op.CREATE, ITEMS, item(1))))
    with psycopg.connect(pg.dsn(dbname), autocommit=True) as admin:
        admin.execute("DROP TABLE dst.items")
    batch = ev.batch(ev(Op.CREATE, ITEMS, item(2)))
    with pytest.raises(TransientError):
        dest.write(batch)
    dest.write(batch)
    assert rows(dbname, "SELECT id FROM dst.items") == [(2,)]


def test_bad_credentials_are_terminal_and_preflight_says_so(dbname: str) -> None:
    cfg = config(dbname, **{"connection.password": "wrong"})
    problems = PostgresDestination(cfg, name="t").preflight()
    assert problems and "password authentication failed" in problems[0].message
    with pytest.raises(TerminalError):
        PostgresDestination(cfg, name="t").open()
    assert PostgresDestination(config(dbname), name="t").preflight() == []


def test_concurrent_writers_to_one_table(dbname: str) -> None:
    ev = Events()
    errors: list[BaseException] = []

    def run(offset: int) -> None:
        d = PostgresDestination(config(dbname), name="t")
        try:
            d.open()
            d.write(
                Batch(
                    [
                        ChangeEvent(Op.CREATE, ITEMS, None, item(offset + i), {"lsn": i}, 1)
                        for i in range(100)
                    ],
                    {"lsn": 100},
                )
            )
        except BaseException as exc:
            errors.append(exc)
        finally:
            d.close()

    threads = [threading.Thread(target=run, args=(k * 1000,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Racing CREATE TABLE IF NOT EXISTS may fail one writer transiently; never terminally.
    assert all(isinstance(e, TransientError) for e in errors), errors
    del ev


def test_values_the_destination_cannot_take_are_poison_not_retried(make: Any) -> None:
    ev, dest = Events(), make()
    nul = ev(Op.CREATE, ITEMS, item(1, notes="a\x00b"))
    odd = ev(Op.CREATE, ITEMS, item(2, notes=object()))
    with pytest.raises(PoisonRecord) as info:
        dest.write(ev.batch(nul, odd, ev(Op.CREATE, ITEMS, item(3))))
    assert {letter.event.after["id"] for letter in info.value.letters if letter.event.after} == {
        1,
        2,
    }


def test_new_rows_are_copied_in_and_existing_keys_fall_back_to_the_upsert(
    make: Any, dbname: str
) -> None:
    ev, dest = Events(), make()
    dest.write(ev.batch(*(ev(Op.CREATE, ITEMS, item(i)) for i in range(10))))
    # Creates of keys already there (a replay, or a key reused after a missed delete): the
    # straight COPY meets them, and the batch is applied as an upsert instead.
    dest.write(ev.batch(*(ev(Op.CREATE, ITEMS, item(i, "r")) for i in range(5, 15))))
    dest.write(ev.batch(*(ev(Op.CREATE, ITEMS, item(i, "s")) for i in range(15, 20))))
    got = rows(dbname, "SELECT id, name, __source_lsn FROM dst.items ORDER BY id")
    assert [r[:2] for r in got] == [
        (i, f"{'n' if i < 5 else 'r' if i < 15 else 's'}{i}") for i in range(20)
    ]
    assert all(r[2] is not None for r in got)


def test_a_table_without_a_key_index_is_never_copied_into(dbname: str) -> None:
    with psycopg.connect(pg.dsn(dbname), autocommit=True) as admin:
        admin.execute("CREATE SCHEMA dst")
        admin.execute("CREATE TABLE dst.items (id int, name text, price numeric, notes text)")
    dest = PostgresDestination(config(dbname, **{"metadata.columns.user.defined": False}), name="t")
    dest.open()
    try:
        ev = Events()
        with pytest.raises(TerminalError) as info:
            dest.write(ev.batch(ev(Op.CREATE, ITEMS, item(1))))
        assert "no primary key matching" in info.value.message
        assert rows(dbname, "SELECT count(*) FROM dst.items") == [(0,)]
    finally:
        dest.close()
