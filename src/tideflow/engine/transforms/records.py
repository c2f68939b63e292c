"""ChangeEvent ⇄ the objects a transform function sees.

``valueObject`` is the row image as JSON-able values (the ``after`` image for c/u/r, the
``before`` image for deletes), rendered as in the Debezium envelope (decimals as strings, times
as ISO 8601, bytes as base64). Columns the source did not send (UNCHANGED) are left out.

Rebuilding keeps each unchanged field's original value and column (so types survive a round
trip through JSON); a changed field is converted back to its column's kind when it still fits,
otherwise it becomes a column of the kind inferred from its JSON type; new fields likewise.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from tideflow.envelope import json_value
from tideflow.events import UNCHANGED, ChangeEvent, Column, Op, TableSchema

_NATIVE = (str, int, float, bool, type(None))
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Input:
    """What one transform call receives."""

    value: dict[str, Any]
    key: dict[str, Any]
    topic: str
    timestamp: int


@dataclass(frozen=True, slots=True)
class Output:
    """A transform's result for one input: ``value`` None means drop the record."""

    value: dict[str, Any] | None
    key: dict[str, Any] | None = None
    topics: tuple[str, ...] | None = None  # None = keep the input topic


def image(event: ChangeEvent) -> dict[str, Any] | None:
    return event.before if event.op == Op.DELETE else event.after


def render(event: ChangeEvent, topic: str) -> Input:
    row = image(event) or {}
    value = {}
    for name, v in row.items():
        if v is UNCHANGED:
            continue
        value[name] = v if isinstance(v, _NATIVE) else json_value(v)
    key = {k: value.get(k) for k in event.table.key}
    return Input(value, key, topic, event.commit_ts_ms)


def _same(original: Any, new: Any) -> bool:
    if isinstance(original, _NATIVE):
        return type(original) is type(new) and bool(original == new)
    return bool(json_value(original) == new)


def _aware(v: dt.datetime) -> dt.datetime:
    if v.tzinfo is None:
        raise ValueError("no time zone")
    return v.astimezone(dt.UTC)


def _json_text(v: Any) -> str:
    return v if isinstance(v, str) else orjson.dumps(v).decode()


_BACK: dict[str, Callable[[Any], Any]] = {
    "int": lambda v: v if isinstance(v, int) and not isinstance(v, bool) else _no(),
    "float": lambda v: (
        float(v) if isinstance(v, int | float) and not isinstance(v, bool) else _no()
    ),
    "decimal": lambda v: Decimal(str(v)) if isinstance(v, int | float | str) else _no(),
    "bool": lambda v: v if isinstance(v, bool) else _no(),
    "date": lambda v: dt.date.fromisoformat(v),
    "time": lambda v: dt.time.fromisoformat(v),
    "timestamp": lambda v: dt.datetime.fromisoformat(v).replace(tzinfo=None),
    "timestamptz": lambda v: _aware(dt.datetime.fromisoformat(v)),
    "bytes": lambda v: base64.b64decode(v, validate=True),
    "json": _json_text,
    "array": lambda v: v if isinstance(v, list) else _no(),
}


def _no() -> Any:
    raise ValueError("does not fit")


def _back(column: Column, v: Any) -> Any:
    if v is None:
        return None
    convert = _BACK.get(column.kind)
    if convert is None:  # text-like kinds (text, enum, uuid, interval, timetz, other)
        return v if isinstance(v, str) else _no()
    return convert(v)


def infer(name: str, v: Any) -> tuple[Column, Any]:
    """A column for a new or re-typed field, from its JSON type."""
    if isinstance(v, bool):
        return Column(name, "boolean", "bool"), v
    if isinstance(v, int):
        return Column(name, "bigint", "int"), v
    if isinstance(v, float):
        return Column(name, "double precision", "float"), v
    if isinstance(v, dict | list):
        return Column(name, "jsonb", "json"), orjson.dumps(v).decode()
    if v is None or isinstance(v, str):
        return Column(name, "text", "text"), v
    return Column(name, "text", "text"), str(v)


class Rebuilder:
    """Turns outputs back into ChangeEvents; caches the derived table schemas."""

    def __init__(self) -> None:
        self._tables: dict[tuple[Any, ...], TableSchema] = {}

    def rebuild(self, event: ChangeEvent, out: Output, topic: str) -> ChangeEvent:
        assert out.value is not None
        table = event.table
        original = image(event) or {}
        row: dict[str, Any] = {}
        columns: list[Column] = []
        for name, v in out.value.items():
            col = table.column(name)
            old = original.get(name, _MISSING)
            if col is not None and old is not _MISSING and old is not UNCHANGED and _same(old, v):
                row[name] = old
                columns.append(col)
                continue
            if col is not None:
                try:
                    row[name] = _back(col, v)
                    columns.append(col)
                    continue
                except (ValueError, TypeError, ArithmeticError):
                    pass
            col, row[name] = infer(name, v)
            columns.append(col)
        for name, old in original.items():
            if old is UNCHANGED and name not in row and (col := table.column(name)) is not None:
                row[name] = UNCHANGED  # not sent by the source: the destination keeps it
                columns.append(col)
        if out.key is not None:
            for name, v in out.key.items():
                if name not in row:
                    col, row[name] = infer(name, v)
                    columns.append(col)
            key = tuple(out.key)
        else:
            key = tuple(k for k in table.key if k in row)
        schema, _, name = topic.rpartition(".")
        new_table = self._table(schema or table.schema, name, columns, key, table.version)
        before, after = (row, None) if event.op == Op.DELETE else (None, row)
        return ChangeEvent(
            event.op,
            new_table,
            before,
            after,
            event.position,
            event.commit_ts_ms,
            event.txid,
            event.snapshot,
        )

    def _table(
        self, schema: str, name: str, columns: list[Column], key: tuple[str, ...], version: int
    ) -> TableSchema:
        keyset = set(key)
        cols = tuple(
            c
            if (c.name in keyset) == c.key
            else Column(c.name, c.type, c.kind, c.nullable, c.name in keyset)
            for c in columns
        )
        sig = (schema, name, cols, key, version)
        found = self._tables.get(sig)
        if found is None:
            if len(self._tables) > 10_000:  # bounded: a transform inventing columns per record
                self._tables.clear()
            found = self._tables[sig] = TableSchema(schema, name, cols, key, version)
        return found
