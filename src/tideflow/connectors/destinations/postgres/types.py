"""Destination column types from source columns (``Column.kind`` and ``Column.type``).

Types keep their meaning and text form where Postgres has them: integer widths,
``numeric(p,s)``, arrays of such types, ``timestamptz``, ``uuid``, network and geometric
types... ``json`` becomes ``jsonb``; text-like, enum and unknown types become ``text`` (the
source's text form, never dropped). Varchar lengths are not kept: a widened source column must
not break the destination.

:func:`widened` decides how an existing destination column follows a source column whose type
was widened (``smallint`` → ``integer`` → ``bigint``, ``numeric(p,s)`` → ``numeric(p2,s2)``,
``real`` → ``double precision``, ``varchar(n)`` → ``varchar(m)``/``text``, arrays of those).
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


_INT_DIGITS = {"smallint": 5, "integer": 10, "bigint": 19}  # decimal digits each one holds
_NUMERIC = re.compile(r"^numeric\((\d+),(\d+)\)$")
_VARCHAR = re.compile(r"^character varying\((\d+)\)$")
_MAX_PRECISION = 1000  # numeric(p,s) allows p up to 1000


def _digits(type_: str) -> tuple[int, int] | None:
    """(integer digits, scale) of an integer or bounded numeric type, else None."""
    if type_ in _INT_DIGITS:
        return _INT_DIGITS[type_], 0
    m = _NUMERIC.match(type_)
    if m:
        precision, scale = int(m.group(1)), int(m.group(2))
        return precision - scale, scale
    return None


def _numeric_family(type_: str) -> bool:
    return type_ == "numeric" or _digits(type_) is not None


def widened(current: str, wanted: str) -> str | None:
    """The type to change a destination column of type ``current`` (as ``format_type`` prints
    it) to so that every value of ``wanted`` (a :func:`column_type`) fits; None when it holds
    them already or when ``wanted`` is not a widening of the same family.

    Never narrows: older rows still hold values of the old shape, and a replayed older schema
    must not undo a widening. Another family (``text`` → ``integer``) is left alone: values
    that do not fit are refused row by row (dead letters or a halt, by the pipeline's policy).
    """
    if current == wanted:
        return None
    if current.endswith("[]") and wanted.endswith("[]"):
        element = widened(current[:-2], wanted[:-2])
        return f"{element}[]" if element is not None else None
    if current in _INT_DIGITS and wanted in _INT_DIGITS:
        return wanted if _INT_DIGITS[wanted] > _INT_DIGITS[current] else None
    if _numeric_family(current) and _numeric_family(wanted):
        have, need = _digits(current), _digits(wanted)
        if have is None:  # unbounded numeric holds every number
            return None
        if need is None:
            return "numeric"
        whole, scale = max(have[0], need[0]), max(have[1], need[1])
        if (whole, scale) == have:
            return None
        if whole + scale > _MAX_PRECISION:
            return "numeric"
        if scale == 0 and current in _INT_DIGITS:
            # An integer column stays an integer type while one holds the digits.
            fits = [t for t, digits in _INT_DIGITS.items() if digits >= whole]
            if fits:
                return fits[0]
        return f"numeric({whole + scale},{scale})"
    if current == "real" and wanted == "double precision":
        return wanted
    m = _VARCHAR.match(current)
    if m and wanted == "text":
        return "text"
    w = _VARCHAR.match(wanted)
    if m and w and int(w.group(1)) > int(m.group(1)):
        return wanted
    return None
