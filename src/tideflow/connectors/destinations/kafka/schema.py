"""Kafka Connect schemas of the keys and envelopes the destination writes.

With ``json.schema.enable`` every key and value is a Kafka Connect JSON converter document,
``{"schema": ..., "payload": ...}``, so Connect sinks and Debezium tooling can type the
payload. Payload values are those of :mod:`tideflow.envelope` (ISO 8601 strings for dates and
times, strings for decimals, base64 for bytes), so the field schemas use the Debezium semantic
names that describe exactly those representations (``io.debezium.time.IsoDate``,
``io.debezium.time.ZonedTimestamp``, ``io.debezium.data.Json``, ...).

Every column field carries two parameters: ``__debezium.source.column.type`` (the source's
type name, as Debezium's ``column.propagate.source.type`` does) and ``__tideflow.kind`` (the
portable column family), so the ``kafkadirect`` source rebuilds the exact
:class:`~tideflow.events.TableSchema`. Fields are optional exactly when the column is nullable.
"""

from __future__ import annotations

from typing import Any, Final

from tideflow.events import Column, TableSchema

KIND_PARAM: Final = "__tideflow.kind"
TYPE_PARAM: Final = "__debezium.source.column.type"

# kind → (Connect type, semantic name or None)
_KINDS: Final[dict[str, tuple[str, str | None]]] = {
    "int": ("int64", None),
    "float": ("float64", None),
    "decimal": ("string", None),
    "bool": ("boolean", None),
    "text": ("string", None),
    "bytes": ("bytes", None),
    "date": ("string", "io.debezium.time.IsoDate"),
    "time": ("string", "io.debezium.time.IsoTime"),
    "timetz": ("string", "io.debezium.time.ZonedTime"),
    "timestamp": ("string", "io.debezium.time.IsoTimestamp"),
    "timestamptz": ("string", "io.debezium.time.ZonedTimestamp"),
    "interval": ("string", "io.debezium.time.Interval"),
    "uuid": ("string", "io.debezium.data.Uuid"),
    "json": ("string", "io.debezium.data.Json"),
    "enum": ("string", "io.debezium.data.Enum"),
    "other": ("string", None),
}

# Array element types by source type name (Postgres and MySQL spellings); JSON-safe renderings
# of everything else are strings.
_ELEMENT_TYPES: Final[dict[str, str]] = {
    **dict.fromkeys(("int2", "int4", "int8", "smallint", "integer", "bigint", "int"), "int64"),
    **dict.fromkeys(("float4", "float8", "real", "double precision", "double"), "float64"),
    **dict.fromkeys(("bool", "boolean"), "boolean"),
}


def _element_type(source_type: str) -> str:
    base = source_type.removesuffix("[]").removeprefix("_").split("(")[0].strip().lower()
    return _ELEMENT_TYPES.get(base, "string")


def column_schema(col: Column, *, optional: bool | None = None) -> dict[str, Any]:
    """The field schema of one column (``optional`` defaults to the column's nullability)."""
    field: dict[str, Any]
    if col.kind == "array":
        field = {"type": "array", "items": {"type": _element_type(col.type), "optional": True}}
    else:
        ctype, name = _KINDS.get(col.kind, ("string", None))
        field = {"type": ctype}
        if name:
            field["name"] = name
    field["optional"] = col.nullable if optional is None else optional
    field["parameters"] = {TYPE_PARAM: col.type, KIND_PARAM: col.kind}
    field["field"] = col.name
    return field


def key_schema(table: TableSchema, topic: str) -> dict[str, Any]:
    """The struct schema of the message key (the primary key columns)."""
    fields = []
    for name in table.key:
        col = table.column(name)
        if col is not None:
            fields.append(column_schema(col, optional=False))
    return {"type": "struct", "name": f"{topic}.Key", "optional": False, "fields": fields}


def _scalar_type(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "int64"}
    if isinstance(value, float):
        return {"type": "float64"}
    if isinstance(value, dict):
        first = next(iter(value.values()), "")
        return {"type": "map", "keys": {"type": "string"}, "values": _scalar_type(first)}
    return {"type": "string"}


def source_schema(connector: str, position: dict[str, Any]) -> dict[str, Any]:
    """The ``source`` block schema; position fields are typed from their values."""
    fields: list[dict[str, Any]] = [
        {"type": "string", "optional": False, "field": "version"},
        {"type": "string", "optional": False, "field": "connector"},
        {"type": "string", "optional": False, "field": "name"},
        {"type": "int64", "optional": False, "field": "ts_ms"},
        {
            "type": "string",
            "optional": True,
            "name": "io.debezium.data.Enum",
            "parameters": {"allowed": "true,last,false,incremental"},
            "field": "snapshot",
        },
        {"type": "string", "optional": True, "field": "db"},
        {"type": "string", "optional": True, "field": "schema"},
        {"type": "string", "optional": False, "field": "table"},
        {"type": "int64", "optional": True, "field": "txId"},
    ]
    fixed = {f["field"] for f in fields}
    for key, value in position.items():
        if key not in fixed:
            fields.append({**_scalar_type(value), "optional": True, "field": key})
    return {
        "type": "struct",
        "name": f"io.debezium.connector.{connector}.Source",
        "optional": False,
        "fields": fields,
    }


def envelope_schema(
    table: TableSchema, topic: str, connector: str, position: dict[str, Any]
) -> dict[str, Any]:
    """The struct schema of the Debezium envelope of ``table``'s events."""
    row = {
        "type": "struct",
        "name": f"{topic}.Value",
        "optional": True,
        "version": table.version,
        "fields": [column_schema(c) for c in table.columns],
    }
    return {
        "type": "struct",
        "name": f"{topic}.Envelope",
        "optional": False,
        "version": 1,
        "fields": [
            {**row, "field": "before"},
            {**row, "field": "after"},
            {**source_schema(connector, position), "field": "source"},
            {"type": "string", "optional": False, "field": "op"},
            {"type": "int64", "optional": True, "field": "ts_ms"},
            {
                "type": "array",
                "items": {"type": "string", "optional": False},
                "optional": True,
                "field": "__unchanged",
            },
        ],
    }
