"""Field operations declared in a transform's config (``transforms.builtin``), no code needed.

Each operation is a dict with an ``op``:

- ``{"op": "drop", "fields": ["a", "b"]}``
- ``{"op": "rename", "fields": {"old": "new"}}``
- ``{"op": "hash", "fields": ["email"], "key": "secret"}`` — HMAC-SHA256 (hex) of the value's
  text; the same input and key always give the same output, so joins on it still work.
- ``{"op": "mask", "fields": ["card"], "with": "****"}`` — replace non-null values.
- ``{"op": "cast", "fields": {"a": "int|float|text|bool|decimal"}}``
- ``{"op": "add", "fields": {"region": "eu"}}`` — static values.
- ``{"op": "filter", "field": "status", "cmp": "==", "value": "paid"}`` — keep records for which
  the predicate holds (``== != > >= < <= in not_in is_null not_null``); others are dropped.

Operations run in order on the JSON-rendered row (see :mod:`.records`).
"""

from __future__ import annotations

import hashlib
import hmac
import operator
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from tideflow.errors import Invalid

Row = dict[str, Any]
Op = Callable[[Row], Row | None]

_CMP: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "in": lambda a, b: a in b,
    "not_in": lambda a, b: a not in b,
    "is_null": lambda a, _: a is None,
    "not_null": lambda a, _: a is not None,
}


def _text(v: Any) -> str:
    return v if isinstance(v, str) else str(v).lower() if isinstance(v, bool) else str(v)


def _cast(kind: str, v: Any) -> Any:
    if v is None:
        return None
    if kind == "int":
        return int(Decimal(str(v)))
    if kind == "float":
        return float(v)
    if kind == "decimal":
        return str(Decimal(str(v)))
    if kind == "bool":
        return v if isinstance(v, bool) else _text(v).lower() in ("true", "1", "t", "yes", "y")
    return _text(v)


def _names(spec: dict[str, Any], mapping: bool) -> Any:
    fields = spec.get("fields")
    if mapping and not isinstance(fields, dict):
        raise Invalid(f"builtin {spec.get('op')!r}: 'fields' must be an object")
    if not mapping and not (isinstance(fields, list) and all(isinstance(f, str) for f in fields)):
        raise Invalid(f"builtin {spec.get('op')!r}: 'fields' must be a list of field names")
    return fields


def compile_op(spec: Any) -> Op:
    """One operation as a function of a row (returns None to drop it). Raises Invalid."""
    if not isinstance(spec, dict) or not isinstance(spec.get("op"), str):
        raise Invalid("each entry of 'transforms.builtin' must be an object with an 'op'")
    kind = spec["op"]
    if kind == "drop":
        names = set(_names(spec, False))
        return lambda row: {k: v for k, v in row.items() if k not in names}
    if kind == "rename":
        mapping = _names(spec, True)
        return lambda row: {mapping.get(k, k): v for k, v in row.items()}
    if kind == "hash":
        fields, key = _names(spec, False), spec.get("key")
        if not isinstance(key, str) or not key:
            raise Invalid("builtin 'hash' needs a non-empty 'key' (the HMAC secret)")
        secret = key.encode()

        def digest(row: Row) -> Row:
            for f in fields:
                if row.get(f) is not None:
                    row[f] = hmac.new(secret, _text(row[f]).encode(), hashlib.sha256).hexdigest()
            return row

        return digest
    if kind == "mask":
        fields, mask = _names(spec, False), str(spec.get("with", "****"))

        def hide(row: Row) -> Row:
            for f in fields:
                if row.get(f) is not None:
                    row[f] = mask
            return row

        return hide
    if kind == "cast":
        casts = _names(spec, True)
        bad = [t for t in casts.values() if t not in ("int", "float", "text", "bool", "decimal")]
        if bad:
            raise Invalid(f"builtin 'cast': unknown type(s) {bad}; use int|float|text|bool|decimal")

        def cast(row: Row) -> Row:
            for f, t in casts.items():
                if f in row:
                    row[f] = _cast(t, row[f])
            return row

        return cast
    if kind == "add":
        extra = _names(spec, True)
        return lambda row: {**row, **extra}
    if kind == "filter":
        field, cmp, value = spec.get("field"), spec.get("cmp", "=="), spec.get("value")
        test = _CMP.get(str(cmp))
        if not isinstance(field, str) or test is None:
            raise Invalid(f"builtin 'filter' needs 'field' and 'cmp' (one of {', '.join(_CMP)})")

        def keep(row: Row) -> Row | None:
            try:
                return row if test(row.get(field), value) else None
            except TypeError:  # e.g. None > 3: the predicate does not hold
                return None

        return keep
    raise Invalid(f"unknown builtin op {kind!r}; use drop, rename, hash, mask, cast, add, filter")


def compile_ops(specs: Any) -> list[Op]:
    if specs is None:
        return []
    if not isinstance(specs, list):
        raise Invalid("config key 'transforms.builtin' must be a list of operations")
    return [compile_op(s) for s in specs]


def apply(ops: list[Op], row: Row) -> Row | None:
    current: Row | None = dict(row)
    for op in ops:
        if current is None:
            return None
        current = op(current)
    return current
