"""Debezium envelope rendering (envelope.py): golden values for every column kind."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import orjson

from tideflow.envelope import Renderer, SourceInfo, json_value, render
from tideflow.events import UNCHANGED, ChangeEvent, Column, Op, TableSchema

COLUMNS = (
    Column("id", "int8", "int", False, True),
    Column("f", "float8", "float"),
    Column("nan", "float8", "float"),
    Column("inf", "float4", "float"),
    Column("d", "numeric(12,2)", "decimal"),
    Column("b", "bool", "bool"),
    Column("t", "text", "text"),
    Column("by", "bytea", "bytes"),
    Column("day", "date", "date"),
    Column("tm", "time", "time"),
    Column("tz", "timetz", "timetz"),
    Column("ts", "timestamp", "timestamp"),
    Column("tstz", "timestamptz", "timestamptz"),
    Column("iv", "interval", "interval"),
    Column("u", "uuid", "uuid"),
    Column("j", "jsonb", "json"),
    Column("arr", "numeric[]", "array"),
    Column("e", "mood", "enum"),
    Column("o", "inet", "other"),
    Column("big", "text", "text"),
)
TABLE = TableSchema("public", "all_kinds", COLUMNS, ("id",))
INFO = SourceInfo("postgresql", "orders-db", "shop", version="0.1.0")
AFTER = {
    "id": 7,
    "f": 1.5,
    "nan": float("nan"),
    "inf": float("-inf"),
    "d": Decimal("12.30"),
    "b": True,
    "t": "héllo",
    "by": b"\x00\xff",
    "day": dt.date(2024, 2, 29),
    "tm": dt.time(13, 14, 15, 500),
    "tz": "13:14:15+02",
    "ts": dt.datetime(2024, 1, 2, 3, 4, 5),
    "tstz": dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC),
    "iv": "P1DT2H",
    "u": "6f1c1a2e-0000-4000-8000-000000000001",
    "j": '{"k": [1, 2]}',
    "arr": [Decimal("1.10"), None],
    "e": "happy",
    "o": "10.0.0.1/32",
    "big": UNCHANGED,
}
EVENT = ChangeEvent(Op.UPDATE, TABLE, {"id": 7}, AFTER, {"lsn": 123456}, 1700000000000, 901)

GOLDEN = {
    "before": {"id": 7},
    "after": {
        "id": 7,
        "f": 1.5,
        "nan": "NaN",
        "inf": "-Infinity",
        "d": "12.30",
        "b": True,
        "t": "héllo",
        "by": "AP8=",
        "day": "2024-02-29",
        "tm": "13:14:15.000500",
        "tz": "13:14:15+02",
        "ts": "2024-01-02T03:04:05",
        "tstz": "2024-01-02T03:04:05.123456+00:00",
        "iv": "P1DT2H",
        "u": "6f1c1a2e-0000-4000-8000-000000000001",
        "j": '{"k": [1, 2]}',
        "arr": ["1.10", None],
        "e": "happy",
        "o": "10.0.0.1/32",
    },
    "source": {
        "version": "0.1.0",
        "connector": "postgresql",
        "name": "orders-db",
        "ts_ms": 1700000000000,
        "snapshot": "false",
        "db": "shop",
        "schema": "public",
        "table": "all_kinds",
        "txId": 901,
        "lsn": 123456,
    },
    "op": "u",
    "ts_ms": 1700000000999,
    "__unchanged": ["big"],
}


def test_golden_rendering_of_every_kind() -> None:
    assert render(EVENT, INFO, ts_ms=1700000000999) == GOLDEN


def test_dumps_is_the_same_document_as_render() -> None:
    assert orjson.loads(Renderer(INFO).dumps(EVENT, ts_ms=1700000000999)) == GOLDEN


def test_unchanged_is_never_rendered_as_a_value() -> None:
    text = Renderer(INFO).dumps(EVENT, ts_ms=1)
    assert b"UNCHANGED" not in text and b"__debezium_unavailable_value" not in text
    assert "big" not in orjson.loads(text)["after"]


def test_creates_deletes_truncates_and_snapshots() -> None:
    small = TableSchema("s", "t", (Column("id", "int4", "int", False, True),), ("id",))
    r = Renderer(INFO)
    c = r.render(ChangeEvent(Op.READ, small, None, {"id": 1}, {"lsn": 5}, 1, None, True), ts_ms=2)
    assert (c["op"], c["before"], c["after"], c["source"]["snapshot"]) == (
        "r",
        None,
        {"id": 1},
        "true",
    )
    assert "__unchanged" not in c
    d = r.render(ChangeEvent(Op.DELETE, small, {"id": 1}, None, {"lsn": 6}, 1), ts_ms=2)
    assert (d["op"], d["before"], d["after"]) == ("d", {"id": 1}, None)
    t = r.render(ChangeEvent(Op.TRUNCATE, small, None, None, {"lsn": 7}, 1), ts_ms=2)
    assert (t["op"], t["before"], t["after"], t["source"]["lsn"]) == ("t", None, None, 7)


def test_json_value_of_nested_and_unknown_types() -> None:
    assert json_value({"a": [b"\x01", Decimal("1E+2")]}) == {"a": ["AQ==", "1E+2"]}
    assert json_value(dt.datetime(2024, 1, 1)) == "2024-01-01T00:00:00"
    assert json_value(memoryview(b"ab")) == "YWI="
    assert json_value(float("inf")) == "Infinity"
