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


# Input and Output are not frozen: a frozen dataclass's __init__ goes through
# object.__setattr__ per field, which costs ~0.5 µs per record on the transform hot path.
# Treat them as immutable all the same.
@dataclass(slots=True)
class Input:
    """What one transform call receives."""

    value: dict[str, Any]
    key: dict[str, Any]
    topic: str
    timestamp: int


@dataclass(slots=True)
class Output:
    """A transform's result for one input: ``value`` None means drop the record."""

    value: dict[str, Any] | None
    key: dict[str, Any] | None = None
    topics: tuple[str, ...] | None = None  # None = keep the input topic


def image(event: ChangeEvent) -> dict[str, Any] | None:
    return event.before if event.op == Op.DELETE else event.after


# Renderers for the non-JSON value types, looked up by exact type: one dict probe per value
# instead of json_value's chain of isinstance checks (they give the same text).
_RENDER_BY_TYPE: dict[type, Callable[[Any], Any]] = {
    Decimal: str,
    dt.datetime: dt.datetime.isoformat,
    dt.date: dt.date.isoformat,
    dt.time: dt.time.isoformat,
}
_PLAIN = frozenset(_NATIVE)


def render(event: ChangeEvent, topic: str) -> Input:
    row = image(event) or {}
    value = {}
    by_type = _RENDER_BY_TYPE
    for name, v in row.items():
        t = type(v)
        if t in _PLAIN:
            value[name] = v
        elif v is UNCHANGED:
            continue
        else:
            f = by_type.get(t)
            value[name] = f(v) if f is not None else json_value(v)
    key = {k: value.get(k) for k in event.table.key}
    return Input(value, key, topic, event.commit_ts_ms)


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


_INFERRED: dict[tuple[str, str], Column] = {}


def _inferred(name: str, type_: str, kind: str) -> Column:
    # Shared Column objects, so a rebuilt schema's columns are long-lived and the schema cache
    # below can key on their identities.
    col = _INFERRED.get((name, kind))
    if col is None:
        if len(_INFERRED) > 10_000:  # bounded: a transform inventing field names per record
            _INFERRED.clear()
        col = _INFERRED[(name, kind)] = Column(name, type_, kind)
    return col


def infer(name: str, v: Any) -> tuple[Column, Any]:
    """A column for a new or re-typed field, from its JSON type."""
    if isinstance(v, bool):
        return _inferred(name, "boolean", "bool"), v
    if isinstance(v, int):
        return _inferred(name, "bigint", "int"), v
    if isinstance(v, float):
        return _inferred(name, "double precision", "float"), v
    if isinstance(v, dict | list):
        return _inferred(name, "jsonb", "json"), orjson.dumps(v).decode()
    if v is None or isinstance(v, str):
        return _inferred(name, "text", "text"), v
    return _inferred(name, "text", "text"), str(v)


class Rebuilder:
    """Turns outputs back into ChangeEvents; caches column lookups and derived table schemas."""

    def __init__(self) -> None:
        self._tables: dict[tuple[Any, ...], TableSchema] = {}
        # id(columns tuple) -> (columns, name -> column): TableSchema.column scans the tuple,
        # once per output field. Holding ``columns`` keeps the id from being reused.
        self._lookup: dict[int, tuple[tuple[Column, ...], dict[str, Column]]] = {}
        # (topic-derived names, key, version, ids of the columns) -> (columns, schema): the
        # common case (same fields every record) skips building and hashing Column tuples.
        self._fast: dict[tuple[Any, ...], tuple[list[Column], TableSchema]] = {}

    def _columns(self, table: TableSchema) -> dict[str, Column]:
        found = self._lookup.get(id(table.columns))
        if found is None or found[0] is not table.columns:
            if len(self._lookup) > 10_000:
                self._lookup.clear()
            found = (table.columns, {c.name: c for c in table.columns})
            self._lookup[id(table.columns)] = found
        return found[1]

    def rebuild(
        self,
        event: ChangeEvent,
        out: Output,
        topic: str,
        rendered: dict[str, Any] | None = None,
    ) -> ChangeEvent:
        """``rendered`` is :func:`render`'s value for ``event`` (rendered again when omitted):
        a field equal to its rendered input keeps its original value and column."""
        assert out.value is not None
        table = event.table
        original = image(event) or {}
        if rendered is None:
            rendered = render(event, topic).value
        by_name = self._columns(table)
        if out.key is None and len(out.value) == len(rendered) == len(original) == len(by_name):
            same = self._same_table(event, out.value, topic, rendered, original, by_name)
            if same is not None:
                return same
        row: dict[str, Any] = {}
        columns: list[Column] = []
        for name, v in out.value.items():
            col = by_name.get(name)
            if col is not None:
                # rendered holds exactly the fields the source sent; comparing with it instead
                # of re-rendering the original avoids a json_value per decimal/time field.
                r = rendered.get(name, _MISSING)
                if r is v or (type(r) is type(v) and r == v):
                    row[name] = original[name]
                    columns.append(col)
                    continue
                try:
                    row[name] = _back(col, v)
                    columns.append(col)
                    continue
                except (ValueError, TypeError, ArithmeticError):
                    pass
            col, row[name] = infer(name, v)
            columns.append(col)
        if len(rendered) != len(original):  # some fields are UNCHANGED
            for name, old in original.items():
                if old is UNCHANGED and name not in row and (col := by_name.get(name)) is not None:
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

    @staticmethod
    def _same_table(
        event: ChangeEvent,
        value: dict[str, Any],
        topic: str,
        rendered: dict[str, Any],
        original: dict[str, Any],
        by_name: dict[str, Column],
    ) -> ChangeEvent | None:
        """The common case — same topic, same fields in the same order, every changed value
        still fits its column — rebuilt on the event's own table; None when it does not apply
        (then the general path builds exactly this event, with more work)."""
        table = event.table
        if topic != table.name:
            return None
        row: dict[str, Any] | None = None
        for (name, v), r_name in zip(value.items(), rendered, strict=True):
            if name != r_name:
                return None
            r = rendered[name]
            if r is v or (type(r) is type(v) and r == v):
                continue
            try:
                converted = _back(by_name[name], v)
            except (ValueError, TypeError, ArithmeticError):
                return None
            if row is None:
                row = dict(original)
            row[name] = converted
        if row is None:
            row = dict(original)
        before, after = (row, None) if event.op == Op.DELETE else (None, row)
        return ChangeEvent(
            event.op,
            table,
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
        fast = (schema, name, key, version, *map(id, columns))
        hit = self._fast.get(fast)
        if hit is not None:
            return hit[1]
        found = self._slow_table(schema, name, columns, key, version)
        if len(self._fast) > 10_000:
            self._fast.clear()
        # The entry holds the columns, so their ids cannot be reused while it exists.
        self._fast[fast] = (columns, found)
        return found

    def _slow_table(
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
