"""Rows events → :class:`~tideflow.events.ChangeEvent`, one decoder per table map.

A table map (sent before each table's rows in every transaction) says which columns the
following row images carry. :func:`build` pairs it with the tracked shape once, so each row
costs one pass over a prepared column list. Row values are matched to columns by position:
with ``binlog_row_metadata=MINIMAL`` the binlog carries no names (``UNKNOWN_COLn``) and the
tracked shape supplies them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymysqlreplication.constants import FIELD_TYPE

from tideflow.connectors.sources.mysql.types import BinaryMode, Converter, converter, kind_of
from tideflow.events import Column, TableSchema

ColumnFilter = Callable[[str, str, str], bool]

_TYPE_NAMES = {
    FIELD_TYPE.TINY: "tinyint",
    FIELD_TYPE.SHORT: "smallint",
    FIELD_TYPE.INT24: "mediumint",
    FIELD_TYPE.LONG: "int",
    FIELD_TYPE.LONGLONG: "bigint",
    FIELD_TYPE.FLOAT: "float",
    FIELD_TYPE.DOUBLE: "double",
    FIELD_TYPE.NEWDECIMAL: "decimal",
    FIELD_TYPE.DECIMAL: "decimal",
    FIELD_TYPE.DATE: "date",
    FIELD_TYPE.NEWDATE: "date",
    FIELD_TYPE.DATETIME: "datetime",
    FIELD_TYPE.DATETIME2: "datetime",
    FIELD_TYPE.TIMESTAMP: "timestamp",
    FIELD_TYPE.TIMESTAMP2: "timestamp",
    FIELD_TYPE.TIME: "time",
    FIELD_TYPE.TIME2: "time",
    FIELD_TYPE.YEAR: "year",
    FIELD_TYPE.JSON: "json",
    FIELD_TYPE.ENUM: "enum",
    FIELD_TYPE.SET: "set",
    FIELD_TYPE.GEOMETRY: "geometry",
}


def binlog_type(col: Any) -> str:
    """A declared-type approximation for a table-map column (when nothing better is known)."""
    t = col.type
    if t == FIELD_TYPE.BIT:
        return f"bit({col.bits})"
    if t in (FIELD_TYPE.VARCHAR, FIELD_TYPE.VAR_STRING, FIELD_TYPE.STRING):
        binary = col.character_set_name == "binary"
        fixed = t == FIELD_TYPE.STRING
        name = ("binary" if fixed else "varbinary") if binary else ("char" if fixed else "varchar")
        return name
    if t == FIELD_TYPE.BLOB:
        return "blob" if col.character_set_name in (None, "binary") else "longtext"
    if t == FIELD_TYPE.NEWDECIMAL:
        return f"decimal({col.precision},{col.decimals})"
    name = _TYPE_NAMES.get(t, "unknown")
    return f"{name} unsigned" if getattr(col, "unsigned", False) else name


def schema_from_table_map(db: str, table: str, columns: list[Any], mode: BinaryMode) -> TableSchema:
    """A shape described only by the table map (names, types, primary key)."""
    key = tuple(c.name for c in columns if getattr(c, "is_primary", False))
    cols = tuple(
        Column(
            c.name, binlog_type(c), kind_of(binlog_type(c), mode), c.name not in key, c.name in key
        )
        for c in columns
    )
    return TableSchema(db, table, cols, key)


@dataclass(slots=True)
class TableDecoder:
    """Converts one table's row images into event dicts for one table-map/shape pairing."""

    schema: TableSchema  # the shape events carry (after the column filter)
    index: tuple[int, ...]  # position in the row image of each kept column
    names: tuple[str, ...]
    convert: tuple[Converter | None, ...]
    set_columns: tuple[tuple[int, str], ...]  # (out index, binlog name) of SET columns
    captured: bool = True

    image: Any = None  # the fast row-image decoder (:func:`.rowcodec.compile_image`), if usable

    def row(self, raw: list[Any], none_sources: dict[str, str] | None = None) -> dict[str, Any]:
        """Event values from one row image's values, in table-map column order."""
        out: dict[str, Any] = {}
        for i, name, conv in zip(self.index, self.names, self.convert, strict=True):
            v = raw[i]
            if v is not None and conv is not None:
                v = conv(v)
            out[name] = v
        if self.set_columns and none_sources:
            # The library returns None for an empty SET; only a real NULL is None for us.
            for i, binlog_name in self.set_columns:
                if none_sources.get(binlog_name) == "empty set":
                    out[self.names[i]] = ""
        return out


def build(
    schema: TableSchema, columns: list[Any], mode: BinaryMode, keep: ColumnFilter | None
) -> TableDecoder:
    """Pair a tracked shape (same column count as the table map) with the table map."""
    index: list[int] = []
    kept: list[Column] = []
    convs: list[Converter | None] = []
    sets: list[tuple[int, str]] = []
    for i, col in enumerate(schema.columns):
        if keep is not None and not col.key and not keep(schema.schema, schema.table, col.name):
            continue
        tm = columns[i]
        labels = list(getattr(tm, "set_values", None) or [])
        if col.type.startswith("set"):
            sets.append((len(kept), str(tm.name or f"UNKNOWN_COL{i}")))
        index.append(i)
        kept.append(col)
        convs.append(converter(col.type, mode, set_labels=labels))
    out_schema = schema
    if len(kept) != len(schema.columns):
        out_schema = TableSchema(
            schema.schema, schema.table, tuple(kept), schema.key, schema.version
        )
    return TableDecoder(
        out_schema, tuple(index), tuple(c.name for c in kept), tuple(convs), tuple(sets)
    )
