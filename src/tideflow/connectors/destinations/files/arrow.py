"""Change events → an Arrow table of Debezium envelope rows (written as Parquet).

Layout: ``op`` (string), ``ts_ms`` (int64, processing time), ``source`` (struct: version,
connector, name, ts_ms, snapshot, db, schema, table, txId and the position keys, e.g. lsn),
``before`` and ``after`` (typed structs with the table's columns; null when absent) and
``__unchanged`` (list of the after-image columns whose value the source did not send; those
are null in ``after`` and mean "keep the previous value", never a value).

Typed structs keep the data queryable (``after.amount`` is a decimal, ``after.created_at`` a
timestamp). Column types come from ``Column.kind``/``type``: integers by width, floats,
``numeric(p,s)`` up to 38 digits as decimal128, bool, binary, date32, time64(us),
timestamp(us) (UTC for timestamptz), lists for arrays of such types; everything else is a
string (JSON text for json). A column whose values of this file do not fit its type
(``'infinity'`` timestamps, numeric NaN, multi-dimensional arrays) is written as strings in
that file rather than refused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from operator import attrgetter, itemgetter
from typing import Any

import orjson
import pyarrow as pa

from tideflow.engine.reduce import has_unchanged
from tideflow.envelope import Renderer, json_value
from tideflow.events import UNCHANGED, ChangeEvent, Column, Op, TableSchema

_UPDATE = Op.UPDATE

_INTS = {
    "int2": pa.int16(),
    "smallint": pa.int16(),
    "int4": pa.int32(),
    "integer": pa.int32(),
    "int": pa.int32(),
    "int8": pa.int64(),
    "bigint": pa.int64(),
}
_FLOATS = {"float4": pa.float32(), "real": pa.float32()}
_NUMERIC = re.compile(r"^(?:numeric|decimal)\((\d+),(\d+)\)$")
_BY_KIND: dict[str, pa.DataType] = {
    "bool": pa.bool_(),
    "bytes": pa.binary(),
    "date": pa.date32(),
    "time": pa.time64("us"),
    "timestamp": pa.timestamp("us"),
    "timestamptz": pa.timestamp("us", tz="UTC"),
}
_ELEMENT_KINDS = {
    "bool": "bool",
    "boolean": "bool",
    "bytea": "bytes",
    "date": "date",
    "time": "time",
    "timestamp": "timestamp",
    "timestamptz": "timestamptz",
    "float8": "float",
    "double precision": "float",
    "float4": "float",
    "real": "float",
}


def _base(type_name: str) -> str:
    return type_name.strip().lower().split("(")[0].strip()


def scalar_type(kind: str, type_name: str) -> pa.DataType:
    base = _base(type_name)
    if kind == "int":
        return _INTS.get(base, pa.int64())
    if kind == "float":
        return _FLOATS.get(base, pa.float64())
    if kind == "decimal":
        m = _NUMERIC.match(type_name.strip().lower().replace(" ", ""))
        if m and 0 < int(m.group(1)) <= 38 and 0 <= int(m.group(2)) <= int(m.group(1)):
            return pa.decimal128(int(m.group(1)), int(m.group(2)))
        return pa.string()
    return _BY_KIND.get(kind, pa.string())


def column_type(column: Column) -> pa.DataType:
    if column.kind != "array":
        return scalar_type(column.kind, column.type)
    element = column.type.strip().lower()
    while element.endswith("[]"):
        element = element[:-2]
    element = element.removeprefix("_")
    base = _base(element)
    kind = (
        "int"
        if base in _INTS
        else _ELEMENT_KINDS.get(base, "decimal" if base in ("numeric", "decimal") else "text")
    )
    return pa.list_(scalar_type(kind, element))


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    value = json_value(value)
    return value if isinstance(value, str) else orjson.dumps(value).decode()


_STR_OR_NONE = frozenset({str, type(None)})
_INT_OR_NONE = frozenset({int, type(None)})


def _array(values: Sequence[Any], type_: pa.DataType, column: Column) -> pa.Array:
    if pa.types.is_string(type_):
        # map(type) and a set run in C: no Python-level test per value.
        if column.kind != "json" and set(map(type, values)) <= _STR_OR_NONE:
            return pa.array(values, pa.string())
        return pa.array([_as_text(v) for v in values], pa.string())
    try:
        return pa.array(values, type_)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return pa.array([_as_text(v) for v in values], pa.string())


def _columns(rows: list[dict[str, Any] | None], names: list[str]) -> list[Sequence[Any]]:
    """The values of each of ``names`` across ``rows`` (None for a missing row or value).

    The common case (every row has every column) is one ``itemgetter`` call per row and one
    transpose, both in C, instead of a Python ``get`` per value.
    """
    if None not in rows:
        try:
            if len(names) == 1:
                return [list(map(itemgetter(names[0]), rows))]  # type: ignore[arg-type]
            return list(zip(*map(itemgetter(*names), rows), strict=True))  # type: ignore[arg-type]
        except KeyError:  # e.g. a delete's before image that holds only the key
            pass
    return [[None if r is None else r.get(name) for r in rows] for name in names]


def _image(
    rows: list[dict[str, Any] | None], table: TableSchema, types: Sequence[pa.DataType]
) -> pa.StructArray:
    names = [c.name for c in table.columns]
    if not names:
        return pa.array([None if r is None else {} for r in rows], pa.struct([]))
    if rows.count(None) == len(rows):  # creates have no before image
        return pa.nulls(len(rows), pa.struct(list(zip(names, types, strict=True))))
    arrays = [
        _array(values, type_, column)
        for values, type_, column in zip(_columns(rows, names), types, table.columns, strict=True)
    ]
    mask = pa.array([r is None for r in rows], pa.bool_()) if None in rows else None
    return pa.StructArray.from_arrays(arrays, names=names, mask=mask)


def _constant(value: Any, type_: pa.DataType, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, type_), n)


_COMMIT_TS, _TXID, _SNAPSHOT, _POSITION = (
    attrgetter("commit_ts_ms"),
    attrgetter("txid"),
    attrgetter("snapshot"),
    attrgetter("position"),
)


def _source(
    events: Sequence[ChangeEvent], table: TableSchema, renderer: Renderer
) -> pa.StructArray:
    info = renderer.info
    n = len(events)
    string = pa.string()
    snapshots = list(map(_SNAPSHOT, events))
    fields: dict[str, pa.Array] = {
        "version": _constant(info.version, string, n),
        "connector": _constant(info.connector, string, n),
        "name": _constant(info.name, string, n),
        "ts_ms": pa.array(list(map(_COMMIT_TS, events)), pa.int64()),
        "snapshot": (
            pa.array(["true" if s else "false" for s in snapshots], string)
            if any(snapshots)
            else _constant("false", string, n)
        ),
        "db": _constant(info.db, string, n),
        "schema": _constant(table.schema, string, n),
        "table": _constant(table.table, string, n),
        "txId": pa.array(list(map(_TXID, events)), pa.int64()),
    }
    positions = list(map(_POSITION, events))
    for key in positions[0]:
        try:
            values = list(map(itemgetter(key), positions))
        except KeyError:
            values = [p.get(key) for p in positions]
        if set(map(type, values)) <= _INT_OR_NONE:  # bool is not an int here
            fields[key] = pa.array(values, pa.int64())
        else:
            fields[key] = pa.array([_as_text(v) for v in values], string)
    return pa.StructArray.from_arrays(list(fields.values()), names=list(fields))


_TYPES: dict[int, tuple[TableSchema, list[pa.DataType]]] = {}


def _types(table: TableSchema) -> list[pa.DataType]:
    """Column types of ``table``, computed once per schema object (a few per table)."""
    hit = _TYPES.get(id(table))
    if hit is None or hit[0] is not table:
        if len(_TYPES) > 256:
            _TYPES.clear()
        hit = _TYPES[id(table)] = (table, [column_type(c) for c in table.columns])
    return hit[1]


def to_table(
    events: Sequence[ChangeEvent], table: TableSchema, renderer: Renderer, ts_ms: int
) -> pa.Table:
    """One file's rows: ``events`` all belong to ``table`` (one schema version)."""
    types = _types(table)
    n = len(events)
    ops = [e.op for e in events]
    afters: list[dict[str, Any] | None] = [e.after for e in events]
    unchanged: list[list[str] | None] | None = None
    if _UPDATE in ops:
        unchanged = [None] * n
        for i, e in enumerate(events):
            after = e.after
            if after is not None and e.op is _UPDATE and has_unchanged(after):
                unchanged[i] = [k for k, v in after.items() if v is UNCHANGED]
                afters[i] = {k: (None if v is UNCHANGED else v) for k, v in after.items()}
    befores: list[dict[str, Any] | None] = [e.before for e in events]
    if befores.count(None) != n and any(b is not None and has_unchanged(b) for b in befores):
        befores = [
            None if b is None else {k: (None if v is UNCHANGED else v) for k, v in b.items()}
            for b in befores
        ]
    string = pa.string()
    return pa.table(
        {
            # Op is a str enum: its members are the strings "c", "u", "d", ...
            "op": pa.array(ops, string),
            "ts_ms": _constant(ts_ms, pa.int64(), n),
            "source": _source(events, table, renderer),
            "before": _image(befores, table, types),
            "after": _image(afters, table, types),
            "__unchanged": (
                pa.array(unchanged, pa.list_(string))
                if unchanged is not None and any(unchanged)
                else pa.nulls(n, pa.list_(string))
            ),
        }
    )
