"""Destination column types from source columns (``Column.kind`` and ``Column.type``).

Types keep their meaning and text form where Postgres has them: integer widths,
``numeric(p,s)``, arrays of such types, ``timestamptz``, ``uuid``, network and geometric
types... ``json`` becomes ``jsonb``; text-like, enum and unknown types become ``text`` (the
source's text form, never dropped). Varchar lengths are not kept: a widened source column must
not break the destination.
"""

from __future__ import annotations

import re

from tideflow.events import Column

_INT = {
    "int2": "smallint",
    "smallint": "smallint",
    "smallserial": "smallint",
    "serial2": "smallint",
    "int4": "integer",
    "integer": "integer",
    "int": "integer",
    "serial": "integer",
    "serial4": "integer",
    "int8": "bigint",
    "bigint": "bigint",
    "bigserial": "bigint",
    "serial8": "bigint",
    "oid": "bigint",
    "xid": "bigint",
    "xid8": "numeric(20,0)",
}
_FLOAT = {
    "float4": "real",
    "real": "real",
    "float8": "double precision",
    "double precision": "double precision",
    "float": "double precision",
}
# Scalar types whose text form the destination accepts as is.
_SAME = {
    "boolean": "boolean",
    "bool": "boolean",
    "bytea": "bytea",
    "date": "date",
    "uuid": "uuid",
    "interval": "interval",
    "json": "jsonb",
    "jsonb": "jsonb",
    "time": "time",
    "time without time zone": "time",
    "timetz": "time with time zone",
    "time with time zone": "time with time zone",
    "timestamp": "timestamp",
    "timestamp without time zone": "timestamp",
    "timestamptz": "timestamptz",
    "timestamp with time zone": "timestamptz",
    "text": "text",
    "varchar": "text",
    "character varying": "text",
    "char": "text",
    "character": "text",
    "bpchar": "text",
    "name": "text",
    "citext": "text",
    "numeric": "numeric",
    "decimal": "numeric",
}
_BUILTIN_OTHER = frozenset(
    {
        "inet",
        "cidr",
        "macaddr",
        "macaddr8",
        "xml",
        "point",
        "line",
        "lseg",
        "box",
        "path",
        "polygon",
        "circle",
        "tsvector",
        "tsquery",
        "money",
        "bit",
        "varbit",
        "bit varying",
        "int4range",
        "int8range",
        "numrange",
        "tsrange",
        "tstzrange",
        "daterange",
        "pg_lsn",
        "int4multirange",
        "int8multirange",
        "nummultirange",
        "tsmultirange",
        "tstzmultirange",
        "datemultirange",
    }
)
_BY_KIND = {
    "int": "bigint",
    "float": "double precision",
    "decimal": "numeric",
    "bool": "boolean",
    "text": "text",
    "bytes": "bytea",
    "date": "date",
    "time": "time",
    "timetz": "time with time zone",
    "timestamp": "timestamp",
    "timestamptz": "timestamptz",
    "interval": "interval",
    "uuid": "uuid",
    "json": "jsonb",
    "enum": "text",
    "other": "text",
}
_MODIFIER = re.compile(r"^([a-z0-9_ ]+?)\s*(\(([0-9, ]+)\))?((\s+with(out)? time zone)?)$")


def _scalar(type_name: str) -> str | None:
    """The destination type for a scalar source type name, None when unknown."""
    t = type_name.strip().lower().removeprefix("pg_catalog.")
    m = _MODIFIER.match(t)
    if not m:
        return None
    base, modifier = m.group(1).strip(), m.group(3)
    zone = (m.group(4) or "").strip()
    if zone:
        base = f"{base} {zone}"
    if base in _INT:
        return _INT[base]
    if base in _FLOAT:
        return _FLOAT[base]
    if base in ("numeric", "decimal"):
        return f"numeric({modifier.replace(' ', '')})" if modifier else "numeric"
    if base in _SAME:
        return _SAME[base]
    if base in _BUILTIN_OTHER:
        return f"{base}({modifier.replace(' ', '')})" if modifier else base
    return None


def _array_element(type_name: str) -> tuple[str, int]:
    t = type_name.strip().lower()
    dims = 0
    while t.endswith("[]"):
        t, dims = t[:-2].rstrip(), dims + 1
    if dims == 0 and t.startswith("_"):
        t, dims = t[1:], 1
    return t, max(dims, 1)


def column_type(column: Column) -> str:
    """The destination type of ``column``."""
    if column.kind == "array":
        element, _ = _array_element(column.type)
        # Postgres ignores declared array dimensions; one [] covers nested arrays.
        return f"{_scalar(element) or 'text'}[]"
    if column.kind in ("text", "enum"):
        return "text"
    if column.kind == "json":
        return "jsonb"
    found = _scalar(column.type)
    # A type name from another database (MySQL ``bit(1)``, ``timestamp(3)``) may name a Postgres
    # type of another family: for these kinds the name only refines the kind's own type.
    strict = _BY_KIND[column.kind] if column.kind in ("bool", "bytes", "timestamptz") else None
    if strict is not None and found is not None and found != strict:
        return strict
    if found is not None and (column.kind != "other" or found != "text"):
        return found
    return _BY_KIND.get(column.kind, "text")
