"""``Renderer.dumps`` splices the envelope from parts: it must stay byte for byte the JSON of
``Renderer.render`` (what it replaced), for every op, kind and position shape."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import orjson
import pytest

from tests.support import kafka
from tideflow.envelope import Renderer, SourceInfo, json_value
from tideflow.events import UNCHANGED, ChangeEvent, Column, Op, TableSchema

INFO = SourceInfo("postgresql", "orders-db", "shop", version="0.1.0")
SMALL = TableSchema(
    "s",
    "t",
    (
        Column("id", "int8", "int", False, True),
        Column("amount", "numeric(12,2)", "decimal"),
        Column("created", "timestamptz", "timestamptz"),
        Column("f", "float8", "float"),
        Column("big", "text", "text"),
    ),
    ("id",),
)
ROW = {
    "id": 1,
    "amount": Decimal("12.30"),
    "created": dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=dt.UTC),
    "f": float("nan"),
    "big": "x" * 40,
}


def reference(renderer: Renderer, event: ChangeEvent, ts_ms: int) -> bytes:
    return orjson.dumps(renderer.render(event, ts_ms=ts_ms, full=False), default=json_value)


POSITIONS: dict[str, dict[str, Any]] = {
    "lsn": {"lsn": 2**40 + 7},
    "binlog": {"file": "mysql-bin.000003", "pos": 1234, "gtid": "abc:1-9"},
    "kafka": {"consumed": 3, "offsets": {"t:0": 5}},
    "empty": {},
    "lsn-as-text": {"lsn": "0/16B3748"},
    "replaces-a-source-field": {"ts_ms": 5, "lsn": 9},
}


@pytest.mark.parametrize("position", list(POSITIONS.values()), ids=list(POSITIONS))
def test_every_op_and_position_shape(position: dict[str, Any]) -> None:
    renderer = Renderer(INFO)
    for i, template in enumerate(kafka.every_op_events()):
        event = ChangeEvent(
            template.op,
            template.table,
            template.before,
            template.after,
            position,
            template.commit_ts_ms,
            template.txid,
            template.snapshot,
        )
        assert renderer.dumps(event, ts_ms=i) == reference(renderer, event, i)


def test_source_block_cache_follows_table_transaction_and_snapshot() -> None:
    renderer = Renderer(INFO)
    other = TableSchema("s", "u", SMALL.columns, ("id",))
    events = [
        ChangeEvent(Op.CREATE, SMALL, None, ROW, {"lsn": 1}, 10, 100),
        ChangeEvent(Op.CREATE, SMALL, None, ROW, {"lsn": 2}, 10, 100),
        ChangeEvent(Op.CREATE, other, None, ROW, {"lsn": 3}, 10, 100),
        ChangeEvent(Op.UPDATE, SMALL, ROW, {**ROW, "big": UNCHANGED}, {"lsn": 4}, 11, 101),
        ChangeEvent(Op.READ, SMALL, None, ROW, {"lsn": 5}, 11, 101, True),
        ChangeEvent(Op.DELETE, SMALL, ROW, None, {"lsn": 6}, 12, None),
    ]
    for event in events:
        assert renderer.dumps(event, ts_ms=0) == reference(renderer, event, 0)


@pytest.mark.parametrize("schemas", [False, True], ids=["plain", "schemas"])
def test_kafka_keys_are_the_json_of_the_key_columns(schemas: bool) -> None:
    from tideflow.connectors.destinations.kafka.serializer import Serializer

    text_key = TableSchema("s", "k", (Column('i"d%', "text", "text", False, True),), ('i"d%',))
    int_key = TableSchema("s", "n", (Column('i"d%', "int8", "int", False, True),), ('i"d%',))
    two = TableSchema("s", "two", SMALL.columns, ("id", "amount"))
    ser = Serializer(schemas=schemas, name="n", source=INFO)
    cases = [
        (int_key, {'i"d%': 12}),
        (int_key, {'i"d%': -(2**63)}),
        (int_key, {'i"d%': True}),
        (int_key, {'i"d%': None}),
        (text_key, {'i"d%': "a"}),
        (two, ROW),
    ]
    for table, row in cases:
        event = ChangeEvent(Op.CREATE, table, None, row, {"lsn": 1}, 1)
        data = ser.key(event, "topic")
        assert data is not None
        doc = orjson.loads(data)
        payload = doc["payload"] if schemas else doc
        assert payload == {k: json_value(row.get(k)) for k in table.key}
        if not schemas:
            assert data == orjson.dumps({k: json_value(row.get(k)) for k in table.key})
