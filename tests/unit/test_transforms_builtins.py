"""Builtin field operations and the record round trip through JSON."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from decimal import Decimal
from typing import Any

import pytest

from tideflow.engine.transforms import builtins
from tideflow.engine.transforms.chain import Chain
from tideflow.engine.transforms.records import Output, Rebuilder, render
from tideflow.engine.transforms.runtime import Limits
from tideflow.engine.transforms.spec import TransformSpec
from tideflow.errors import Invalid
from tideflow.events import UNCHANGED, ChangeEvent, Column, Op, TableSchema

TABLE = TableSchema(
    "public",
    "items",
    (
        Column("id", "bigint", "int", key=True),
        Column("n", "numeric(12,2)", "decimal"),
        Column("ts", "timestamptz", "timestamptz"),
        Column("email", "text", "text"),
        Column("big", "text", "text"),
    ),
    ("id",),
)


def event(i: int, op: Op = Op.CREATE) -> ChangeEvent:
    row = {
        "id": i,
        "n": Decimal("1.50"),
        "ts": dt.datetime(2024, 1, 1, tzinfo=dt.UTC),
        "email": f"u{i}@x.org",
        "big": UNCHANGED,
    }
    before, after = (row, None) if op == Op.DELETE else (None, row)
    return ChangeEvent(op, TABLE, before, after, {"lsn": i}, 1000)


def spec(builtin: list[Any] = (), code: dict[str, str] | None = None, **kw: Any) -> TransformSpec:  # type: ignore[assignment]
    return TransformSpec(
        id="t1",
        name="t",
        kind="map_filter",
        language=kw.get("language", "JavaScript"),
        version=1,
        code=tuple((code or {}).items()),
        builtin=tuple(builtin),
        pattern=kw.get("pattern"),
        topics=None,
        limits=Limits(),
    )


@pytest.mark.parametrize(
    ("ops", "expected"),
    [
        ([{"op": "drop", "fields": ["b"]}], {"a": 1}),
        ([{"op": "rename", "fields": {"a": "z"}}], {"z": 1, "b": "2"}),
        ([{"op": "mask", "fields": ["b"]}], {"a": 1, "b": "****"}),
        ([{"op": "cast", "fields": {"b": "int", "a": "text"}}], {"a": "1", "b": 2}),
        ([{"op": "add", "fields": {"c": True}}], {"a": 1, "b": "2", "c": True}),
        ([{"op": "filter", "field": "a", "cmp": ">", "value": 5}], None),
        ([{"op": "filter", "field": "a", "cmp": "in", "value": [1, 2]}], {"a": 1, "b": "2"}),
    ],
    ids=["drop", "rename", "mask", "cast", "add", "filter-out", "filter-in"],
)
def test_builtin_ops(ops: list[Any], expected: Any) -> None:
    assert builtins.apply(builtins.compile_ops(ops), {"a": 1, "b": "2"}) == expected


def test_hash_is_hmac_sha256() -> None:
    out = builtins.apply(
        builtins.compile_ops([{"op": "hash", "fields": ["e"], "key": "k"}]), {"e": "a"}
    )
    assert out == {"e": hmac.new(b"k", b"a", hashlib.sha256).hexdigest()}


@pytest.mark.parametrize(
    "bad",
    [{"op": "nope"}, {"op": "hash", "fields": ["a"]}, {"op": "cast", "fields": {"a": "date"}}, "x"],
    ids=["unknown", "hash-without-key", "cast-unknown-type", "not-object"],
)
def test_bad_builtins_are_refused(bad: Any) -> None:
    with pytest.raises(Invalid):
        builtins.compile_ops([bad])


def test_round_trip_keeps_types_and_unchanged() -> None:
    chain = Chain((spec([{"op": "add", "fields": {"flag": 1}}]),))
    [out], failed = chain.apply([event(1)])
    assert not failed
    assert out.after is not None
    assert out.after["n"] == Decimal("1.50") and out.after["ts"].tzinfo is not None
    assert out.after["big"] is UNCHANGED and out.after["flag"] == 1
    assert out.table.column("flag") == Column("flag", "bigint", "int")
    assert out.table.key == ("id",)


def test_changed_values_convert_back_and_deletes_use_before() -> None:
    code = (
        "function _streamkap_transform(v) { v.n = '2.25'; v.email = v.email.toUpperCase(); "
        "return v; }"
    )
    chain = Chain((spec(code={"value_transform": code}),))
    outs, _ = chain.apply([event(1), event(2, Op.DELETE)])
    assert outs[0].after is not None and outs[0].after["n"] == Decimal("2.25")
    assert outs[1].after is None and outs[1].before is not None
    assert outs[1].before["email"] == "U2@X.ORG"


def test_pattern_limits_which_topics_a_transform_sees() -> None:
    chain = Chain((spec([{"op": "drop", "fields": ["email"]}], pattern="public\\.other"),))
    [out], _ = chain.apply([event(1)])
    assert out.after is not None and "email" in out.after


def full_event(i: int, op: Op = Op.CREATE) -> ChangeEvent:
    """An event whose row has every column (no UNCHANGED): the rebuild fast path applies."""
    e = event(i, op)
    row = e.before if op == Op.DELETE else e.after
    assert row is not None
    row["big"] = "b"
    return e


@pytest.mark.parametrize(
    "change",
    [
        {},  # identity
        {"n": "2.25", "email": "X"},  # changed values that fit their columns
        {"n": "not a number"},  # does not fit: re-typed
        {"id": 1.5},  # does not fit an int: re-typed
    ],
    ids=["identity", "fits", "retyped-decimal", "retyped-key"],
)
@pytest.mark.parametrize("op", [Op.CREATE, Op.DELETE], ids=["create", "delete"])
def test_rebuild_fast_path_equals_the_general_path(change: dict[str, Any], op: Op) -> None:
    e = full_event(1, op)
    rendered = render(e, TABLE.name).value
    value = {**rendered, **change}
    fast = Rebuilder().rebuild(e, Output(value), TABLE.name, rendered)
    # Same fields in another order: the general path (the fast one does not apply).
    general = Rebuilder().rebuild(e, Output(dict(reversed(value.items()))), TABLE.name, rendered)
    row = fast.before if op == Op.DELETE else fast.after
    assert row == (general.before if op == Op.DELETE else general.after)
    assert (fast.op, fast.position, fast.commit_ts_ms) == (op, e.position, e.commit_ts_ms)
    assert {c.name: c for c in fast.table.columns} == {c.name: c for c in general.table.columns}
    assert (fast.table.name, fast.table.key) == (general.table.name, general.table.key)
    if not change or "email" in change:
        assert fast.table is TABLE  # nothing re-typed: the event keeps its table
