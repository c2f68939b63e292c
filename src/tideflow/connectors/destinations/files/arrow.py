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
from typing import Any

import orjson
import pyarrow as pa

from tideflow.engine.reduce import has_unchanged
from tideflow.envelope import Renderer, json_value
from tideflow.events import UNCHANGED, ChangeEvent, Column, Op, TableSchema

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


def _array(values: list[Any], type_: pa.DataType, column: Column) -> pa.Array:
    if pa.types.is_string(type_):
        if column.kind != "json" and all(v is None or isinstance(v, str) for v in values):
            return pa.array(values, pa.string())
        return pa.array([_as_text(v) for v in values], pa.string())
    try:
        return pa.array(values, type_)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return pa.array([_as_text(v) for v in values], pa.string())


def _image(
    rows: Sequence[dict[str, Any] | None], table: TableSchema, types: Sequence[pa.DataType]
) -> pa.StructArray:
    arrays = []
    for column, type_ in zip(table.columns, types, strict=True):
        name = column.name
        values = [None if r is None else r.get(name) for r in rows]
        arrays.append(_array(values, type_, column))
    mask = pa.array([r is None for r in rows], pa.bool_())
    names = [c.name for c in table.columns]
    if not names:
        return pa.array([None if r is None else {} for r in rows], pa.struct([]))
    return pa.StructArray.from_arrays(arrays, names=names, mask=mask)


def _source(events: Sequence[ChangeEvent], renderer: Renderer) -> pa.StructArray:
    info = renderer.info
    n = len(events)
    fields: dict[str, pa.Array] = {
        "version": pa.array([info.version] * n, pa.string()),
        "connector": pa.array([info.connector] * n, pa.string()),
        "name": pa.array([info.name] * n, pa.string()),
        "ts_ms": pa.array([e.commit_ts_ms for e in events], pa.int64()),
        "snapshot": pa.array(["true" if e.snapshot else "false" for e in events], pa.string()),
        "db": pa.array([info.db] * n, pa.string()),
        "schema": pa.array([e.table.schema for e in events], pa.string()),
        "table": pa.array([e.table.table for e in events], pa.string()),
        "txId": pa.array([e.txid for e in events], pa.int64()),
    }
    for key in events[0].position:
        values = [e.position.get(key) for e in events]
        if all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in values):
            fields[key] = pa.array(values, pa.int64())
        else:
            fields[key] = pa.array([_as_text(v) for v in values], pa.string())
    return pa.StructArray.from_arrays(list(fields.values()), names=list(fields))


def to_table(
    events: Sequence[ChangeEvent], table: TableSchema, renderer: Renderer, ts_ms: int
) -> pa.Table:
    """One file's rows: ``events`` all belong to ``table`` (one schema version)."""
    types = [column_type(c) for c in table.columns]
    afters: list[dict[str, Any] | None] = []
    unchanged: list[list[str] | None] = []
    for e in events:
        after = e.after
        if after is not None and e.op is Op.UPDATE and has_unchanged(after):
            unchanged.append([k for k, v in after.items() if v is UNCHANGED])
            after = {k: (None if v is UNCHANGED else v) for k, v in after.items()}
        else:
            unchanged.append(None)
        afters.append(after)
    befores = [e.before for e in events]
    if any(b is not None and has_unchanged(b) for b in befores):
        befores = [
            None if b is None else {k: (None if v is UNCHANGED else v) for k, v in b.items()}
            for b in befores
        ]
    return pa.table(
        {
            "op": pa.array([e.op.value for e in events], pa.string()),
            "ts_ms": pa.array([ts_ms] * len(events), pa.int64()),
            "source": _source(events, renderer),
            "before": _image(befores, table, types),
            "after": _image(afters, table, types),
            "__unchanged": pa.array(unchanged, pa.list_(pa.string())),
        }
    )
