"""``Renderer.dumps_many`` and ``Serializer.keys`` are the per-run forms of ``dumps`` and
``key``: they must give the same bytes for every event, whichever path an event takes."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from tests.support import kafka
from tideflow.connectors.destinations.kafka.serializer import Serializer
from tideflow.envelope import Renderer, SourceInfo
from tideflow.events import UNCHANGED, ChangeEvent, Column, Op, TableSchema

INFO = SourceInfo("postgresql", "orders-db", "shop", version="0.1.0")
# No float or array column: the events of one transaction take the one-step path.
PLAIN = TableSchema(
    "s",
    "t",
    (
        Column("id", "int8", "int", False, True),
        Column("amount", "numeric(12,2)", "decimal"),
        Column("created", "timestamptz", "timestamptz"),
        Column("big", "text", "text"),
        Column("raw", "bytea", "bytes"),
    ),
    ("id",),
)
OTHER = TableSchema("s", "u", PLAIN.columns, ("id",))
WITH_FLOAT = TableSchema("s", "f", (*PLAIN.columns, Column("f", "float8", "float")), ("id",))


def row(i: int, **changes: Any) -> dict[str, Any]:
    base = {
        "id": i,
        "amount": Decimal("12.30"),
        "created": dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
        "big": f"x{i}" * 20,
        "raw": b"\x00\x01",
    }
    return {**base, **changes}


def events() -> list[ChangeEvent]:
    c, u, d = Op.CREATE, Op.UPDATE, Op.DELETE
    return [
        ChangeEvent(c, PLAIN, None, row(1), {"lsn": 1}, 10, 100),
        ChangeEvent(c, PLAIN, None, row(2), {"lsn": 2}, 10, 100),
        ChangeEvent(u, PLAIN, row(2), row(2, big=UNCHANGED), {"lsn": 3}, 10, 100),
        ChangeEvent(u, PLAIN, row(2, big=UNCHANGED), row(2), {"lsn": 4}, 10, 100),
        ChangeEvent(u, PLAIN, None, row(2, amount=None), {"lsn": 5}, 10, 100),
        ChangeEvent(d, PLAIN, row(2), None, {"lsn": 6}, 10, 100),
        ChangeEvent(c, OTHER, None, row(3), {"lsn": 7}, 10, 100),
        ChangeEvent(c, PLAIN, None, row(4), {"lsn": 8}, 10, 100),
        ChangeEvent(c, PLAIN, None, row(5), {"lsn": 9}, 11, 101),
        ChangeEvent(c, PLAIN, None, row(6), {"lsn": 10}, 11, 102),
        ChangeEvent(c, PLAIN, None, row(7), {"lsn": 11}, 12, 102),
        ChangeEvent(Op.READ, PLAIN, None, row(8), {"lsn": 12}, 12, 102, True),
        ChangeEvent(c, PLAIN, None, row(9), {"lsn": 13}, 12, 102),
        ChangeEvent(c, PLAIN, None, row(10), {"lsn": "0/D"}, 12, 102),
        ChangeEvent(c, PLAIN, None, row(11), {"lsn": 14, "extra": 1}, 12, 102),
        ChangeEvent(c, PLAIN, None, row(12), {"ts_ms": 5, "lsn": 15}, 12, 102),
        ChangeEvent(c, PLAIN, None, row(13), {}, 12, 102),
        ChangeEvent(c, WITH_FLOAT, None, row(14, f=float("nan")), {"lsn": 16}, 12, 102),
        ChangeEvent(c, WITH_FLOAT, None, row(15, f=1.5), {"lsn": 17}, 12, 102),
        ChangeEvent(Op.TRUNCATE, PLAIN, None, None, {"lsn": 18}, 12, 102),
        ChangeEvent(c, PLAIN, None, row(16), {"lsn": 19}, 12, None),
        *(ChangeEvent(c, PLAIN, None, row(i), {"lsn": i}, 13, 103) for i in range(20, 25)),
        ChangeEvent(u, PLAIN, row(20), row(20, big="y"), {"lsn": 25}, 13, 103),
        ChangeEvent(d, PLAIN, row(20), None, {"lsn": 26}, 13, 103),
    ]


@pytest.mark.parametrize("start", [0, 1, 5, 12], ids=lambda s: f"from-{s}")
def test_dumps_many_is_dumps_of_each_event(start: int) -> None:
    evs = events()[start:]
    expected = [Renderer(INFO).dumps(e, ts_ms=42) for e in evs]
    single = Renderer(INFO)
    assert [single.dumps(e, ts_ms=42) for e in evs] == expected
    assert Renderer(INFO).dumps_many(evs, 42) == expected


def test_dumps_many_on_every_kind() -> None:
    evs = kafka.every_op_events()
    renderer = Renderer(INFO)
    assert renderer.dumps_many(evs, 7) == [Renderer(INFO).dumps(e, ts_ms=7) for e in evs]


def test_dumps_many_after_dumps_reuses_the_cache_correctly() -> None:
    renderer = Renderer(INFO)
    first, *rest = events()
    renderer.dumps(first, ts_ms=1)
    assert renderer.dumps_many(rest, 2) == [Renderer(INFO).dumps(e, ts_ms=2) for e in rest]


@pytest.mark.parametrize("schemas", [False, True], ids=["plain", "schemas"])
def test_keys_are_key_of_each_event(schemas: bool) -> None:
    ser = Serializer(schemas=schemas, name="n", source=INFO)
    text_key = TableSchema("s", "k", (Column("id", "text", "text", False, True),), ("id",))
    runs = [
        [e for e in events() if e.table is PLAIN],
        [
            ChangeEvent(Op.CREATE, PLAIN, None, {"id": True}, {"lsn": 1}, 1),
            ChangeEvent(Op.CREATE, PLAIN, None, {"id": None}, {"lsn": 1}, 1),
            ChangeEvent(Op.CREATE, OTHER, None, {"id": "7"}, {"lsn": 1}, 1),
            ChangeEvent(Op.TRUNCATE, PLAIN, None, None, {"lsn": 1}, 1),
        ],
        [ChangeEvent(Op.CREATE, text_key, None, {"id": "a"}, {"lsn": 1}, 1)],
        [],
    ]
    for run in runs:
        assert ser.keys(run, "topic") == [ser.key(e, "topic") for e in run]
