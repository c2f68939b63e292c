"""JSON values of Debezium envelopes → the Python values of :data:`~tideflow.events.COLUMN_KINDS`.

Reads both what :mod:`tideflow.envelope` writes (ISO 8601 strings, decimal strings, base64
bytes) and Debezium's own numeric encodings named by Kafka Connect semantic types (days since
epoch, micro-/nano-second timestamps, Connect ``Decimal`` bytes with a scale).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Final

import orjson

EPOCH: Final = dt.datetime(1970, 1, 1)
EPOCH_DATE: Final = dt.date(1970, 1, 1)

# Connect semantic name → column kind.
SEMANTIC_KINDS: Final[dict[str, str]] = {
    **dict.fromkeys(
        ("io.debezium.time.Date", "io.debezium.time.IsoDate", "org.apache.kafka.connect.data.Date"),
        "date",
    ),
    **dict.fromkeys(
        (
            "io.debezium.time.Time",
            "io.debezium.time.MicroTime",
            "io.debezium.time.NanoTime",
            "io.debezium.time.IsoTime",
            "org.apache.kafka.connect.data.Time",
        ),
        "time",
    ),
    "io.debezium.time.ZonedTime": "timetz",
    **dict.fromkeys(
        (
            "io.debezium.time.Timestamp",
            "io.debezium.time.MicroTimestamp",
            "io.debezium.time.NanoTimestamp",
            "io.debezium.time.IsoTimestamp",
            "org.apache.kafka.connect.data.Timestamp",
        ),
        "timestamp",
    ),
    "io.debezium.time.ZonedTimestamp": "timestamptz",
    **dict.fromkeys(("io.debezium.time.MicroDuration", "io.debezium.time.Interval"), "interval"),
    "io.debezium.data.Uuid": "uuid",
    "io.debezium.data.Json": "json",
    **dict.fromkeys(("io.debezium.data.Enum", "io.debezium.data.EnumSet"), "enum"),
    **dict.fromkeys(
        ("org.apache.kafka.connect.data.Decimal", "io.debezium.data.VariableScaleDecimal"),
        "decimal",
    ),
}

CONNECT_KINDS: Final[dict[str, str]] = {
    **dict.fromkeys(("int8", "int16", "int32", "int64"), "int"),
    **dict.fromkeys(("float32", "float64"), "float"),
    "boolean": "bool",
    "string": "text",
    "bytes": "bytes",
    "array": "array",
    "struct": "json",
    "map": "json",
}

# Integer units of Debezium's numeric time encodings, per semantic name.
_TIME_UNITS: Final[dict[str, int]] = {
    "io.debezium.time.Time": 1_000,
    "org.apache.kafka.connect.data.Time": 1_000,
    "io.debezium.time.MicroTime": 1,
    "io.debezium.time.NanoTime": -1_000,
    "io.debezium.time.Timestamp": 1_000,
    "org.apache.kafka.connect.data.Timestamp": 1_000,
    "io.debezium.time.MicroTimestamp": 1,
    "io.debezium.time.NanoTimestamp": -1_000,
}

_FLOATS: Final = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}


def _micros(value: int, semantic: str | None) -> int:
    unit = _TIME_UNITS.get(semantic or "", 1)
    return value // -unit if unit < 0 else value * unit


def _decimal(value: Any, params: dict[str, Any]) -> Decimal:
    if isinstance(value, dict):  # VariableScaleDecimal: {"scale": s, "value": base64}
        params = {"scale": value.get("scale", 0)}
        value = value.get("value")
    if isinstance(value, str) and "scale" in params:
        unscaled = int.from_bytes(base64.b64decode(value), "big", signed=True)
        return Decimal(unscaled).scaleb(-int(params["scale"]))
    return Decimal(str(value))


def _time(value: Any, semantic: str | None) -> dt.time:
    if isinstance(value, int):
        micros = _micros(value, semantic)
        return (EPOCH + dt.timedelta(microseconds=micros)).time()
    return dt.time.fromisoformat(str(value))


def _timestamp(value: Any, semantic: str | None) -> dt.datetime:
    if isinstance(value, int):
        return EPOCH + dt.timedelta(microseconds=_micros(value, semantic))
    return dt.datetime.fromisoformat(str(value))


def _timestamptz(value: Any) -> dt.datetime:
    parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def _date(value: Any) -> dt.date:
    if isinstance(value, int):
        return EPOCH_DATE + dt.timedelta(days=value)
    return dt.date.fromisoformat(str(value))


def _float(value: Any) -> float:
    return _FLOATS[value] if isinstance(value, str) else float(value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _bytes(value: Any) -> bytes:
    return base64.b64decode(value) if isinstance(value, str) else bytes(value)


def converter(
    kind: str, semantic: str | None = None, params: dict[str, Any] | None = None
) -> Callable[[Any], Any]:
    """A function turning one JSON value of a column of ``kind`` into its Python value."""
    p = params or {}
    convert: Callable[[Any], Any]
    if kind == "int":
        convert = int
    elif kind == "float":
        convert = _float
    elif kind == "decimal":
        convert = lambda v: _decimal(v, p)  # noqa: E731
    elif kind == "bool":
        convert = bool
    elif kind == "bytes":
        convert = _bytes
    elif kind == "date":
        convert = _date
    elif kind == "time":
        convert = lambda v: _time(v, semantic)  # noqa: E731
    elif kind == "timestamp":
        convert = lambda v: _timestamp(v, semantic)  # noqa: E731
    elif kind == "timestamptz":
        convert = _timestamptz
    elif kind == "array":
        element = _ELEMENTS.get(element_base(str(p.get("__debezium.source.column.type", ""))))
        convert = (lambda v: [None if e is None else element(e) for e in v]) if element else list
    else:
        convert = _text
    return lambda v: None if v is None else convert(v)


def element_base(source_type: str) -> str:
    return source_type.removesuffix("[]").removeprefix("_").split("(")[0].strip().lower()


# Element conversions of arrays whose elements the envelope renders as strings.
_ELEMENTS: Final[dict[str, Callable[[Any], Any]]] = {
    "numeric": lambda v: Decimal(str(v)),
    "decimal": lambda v: Decimal(str(v)),
    "date": _date,
    "timestamp": lambda v: dt.datetime.fromisoformat(str(v)),
    "timestamptz": _timestamptz,
    "bytea": _bytes,
    "float4": _float,
    "float8": _float,
}


def json_kind(value: Any) -> str:
    """The column kind inferred from a JSON value (schemaless input)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "json"
    return "text"
