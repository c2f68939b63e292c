"""Change events → Arrow envelope rows (the Parquet layout of the files destination)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa

from tideflow.connectors.destinations.files.arrow import to_table
from tideflow.envelope import Renderer, SourceInfo
from tideflow.events import UNCHANGED, ChangeEvent, Column, Op, TableSchema

ITEMS = TableSchema(
    "shop",
    "items",
    (
        Column("id", "int4", "int", False, True),
        Column("price", "numeric(7,2)", "decimal"),
        Column("at", "timestamptz", "timestamptz"),
        Column("doc", "jsonb", "json"),
        Column("note", "text", "text"),
    ),
    ("id",),
)
AT = datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
RENDERER = Renderer(SourceInfo("postgresql", "src", "db"))


def row(i: int, **values: Any) -> dict[str, Any]:
    return {
        "id": i,
        "price": Decimal("1.25"),
        "at": AT,
        "doc": '{"a": 1}',
        "note": f"n{i}",
        **values,
    }


def event(op: Op, before: Any, after: Any, lsn: Any = 1, **kw: Any) -> ChangeEvent:
    return ChangeEvent(op, ITEMS, before, after, {"lsn": lsn}, 1_700_000_000_000, 42, **kw)


def test_creates_have_typed_after_images_and_null_before_images() -> None:
    table = to_table([event(Op.CREATE, None, row(i), lsn=i) for i in range(3)], ITEMS, RENDERER, 9)
    after = table.schema.field("after").type
    assert after.field("price").type == pa.decimal128(7, 2)
    assert after.field("at").type == pa.timestamp("us", tz="UTC")
    rows = table.to_pylist()
    assert [r["after"]["id"] for r in rows] == [0, 1, 2]
    assert rows[0]["after"]["price"] == Decimal("1.25") and rows[0]["after"]["at"] == AT
    assert all(r["before"] is None and r["__unchanged"] is None for r in rows)
    assert [r["op"] for r in rows] == ["c", "c", "c"]
    assert rows[2]["source"] == {
        "version": RENDERER.info.version,
        "connector": "postgresql",
        "name": "src",
        "ts_ms": 1_700_000_000_000,
        "snapshot": "false",
        "db": "db",
        "schema": "shop",
        "table": "items",
        "txId": 42,
        "lsn": 2,
    }


def test_updates_deletes_and_unchanged_values() -> None:
    events = [
        event(Op.UPDATE, row(1), row(1, note=UNCHANGED, price=None)),
        event(Op.DELETE, {"id": 1}, None),  # REPLICA IDENTITY DEFAULT: the key only
        event(Op.READ, None, row(2), snapshot=True),
    ]
    rows = to_table(events, ITEMS, RENDERER, 9).to_pylist()
    assert rows[0]["after"]["note"] is None and rows[0]["after"]["price"] is None
    assert rows[0]["__unchanged"] == ["note"]
    assert rows[0]["before"]["note"] == "n1"
    assert rows[1]["before"] == {"id": 1, "price": None, "at": None, "doc": None, "note": None}
    assert rows[1]["after"] is None and rows[1]["__unchanged"] is None
    assert [r["source"]["snapshot"] for r in rows] == ["false", "false", "true"]
    assert [r["op"] for r in rows] == ["u", "d", "r"]


def test_values_that_do_not_fit_become_strings_and_positions_keep_their_keys() -> None:
    events = [
        ChangeEvent(
            Op.CREATE, ITEMS, None, row(1, at="infinity", note=5), {"file": "a", "pos": 4}, 1
        ),
        ChangeEvent(Op.CREATE, ITEMS, None, row(2), {"file": "b"}, 1),
    ]
    table = to_table(events, ITEMS, RENDERER, 9)
    assert table.schema.field("after").type.field("at").type == pa.string()
    rows = table.to_pylist()
    assert rows[0]["after"]["at"] == "infinity" and rows[1]["after"]["at"].startswith("2024-01-02")
    assert [r["after"]["note"] for r in rows] == ["5", "n2"]
    assert [(r["source"]["file"], r["source"]["pos"]) for r in rows] == [("a", 4), ("b", None)]
