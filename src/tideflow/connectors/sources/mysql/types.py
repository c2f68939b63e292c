"""MySQL/MariaDB column types → portable kinds, and binlog values → event values.

``mysql-replication`` decodes row images into Python values; the converters here finish the
job so values follow :data:`tideflow.events.COLUMN_KINDS`:

- ``BIGINT UNSIGNED`` is kind ``decimal`` (values up to 2**64-1 overflow a signed 64-bit
  destination column); smaller unsigned integers fit in ``int``.
- ``TIMESTAMP`` is stored in UTC → aware UTC datetime (``timestamptz``); ``DATETIME`` is a
  wall-clock value → naive datetime (``timestamp``).
- ``TIME`` (range ±838:59:59) → ``datetime.time`` when within a day, else its text form
  (``-12:30:00``, ``100:00:00``), never dropped.
- Zero dates (``0000-00-00``, ``0000-00-00 00:00:00``, allowed by lax ``sql_mode``) → ``None``:
  they are not valid dates in any destination.
- ``JSON`` → the JSON text (MariaDB stores JSON as text already; MySQL's binary JSON is
  rendered as MySQL prints it).
- ``ENUM`` → the label; ``SET`` → comma-separated labels in definition order (``''`` for the
  empty set).
- ``BIT(1)`` → bool; ``BIT(n)`` → big-endian bytes (then ``binary.handling.mode``).
- Binary strings (``BINARY``/``VARBINARY``/``BLOB``) → bytes, or text under the base64/hex
  modes; ``BINARY(n)`` is padded back to n bytes (the binlog strips trailing zero bytes).
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal

Converter = Callable[[Any], Any]
BinaryMode = Literal["bytes", "base64", "base64-url-safe", "hex"]

_INT = {"tinyint", "smallint", "mediumint", "int", "integer", "year", "bool", "boolean"}
_TEXT = {
    "char",
    "varchar",
    "tinytext",
    "text",
    "mediumtext",
    "longtext",
    "character",
    "character varying",
    "nchar",
    "nvarchar",
    "national",
    "long",
    "inet4",
    "inet6",
    "set",
}
_BYTES = {
    "binary",
    "varbinary",
    "tinyblob",
    "blob",
    "mediumblob",
    "longblob",
    "geometry",
    "point",
    "linestring",
    "polygon",
    "multipoint",
    "multilinestring",
    "multipolygon",
    "geometrycollection",
    "geomcollection",
}
_KINDS = {
    **dict.fromkeys(_INT, "int"),
    **dict.fromkeys(_TEXT, "text"),
    **dict.fromkeys(_BYTES, "bytes"),
    **dict.fromkeys(("decimal", "numeric", "dec", "fixed"), "decimal"),
    **dict.fromkeys(("float", "double", "real", "double precision"), "float"),
    "date": "date",
    "datetime": "timestamp",
    "timestamp": "timestamptz",
    "time": "time",
    "json": "json",
    "enum": "enum",
    "uuid": "uuid",
}
_BASE = re.compile(r"^\s*([a-z ]+?)\s*(?:\(|$| unsigned| zerofill| signed)")
_LENGTH = re.compile(r"\((\d+)\)")


def base_type(column_type: str) -> str:
    """``decimal(12,2) unsigned`` → ``decimal``."""
    m = _BASE.match(column_type.lower())
    return m.group(1) if m else column_type.lower().split("(")[0].strip()


def _length(column_type: str) -> int | None:
    m = _LENGTH.search(column_type)
    return int(m.group(1)) if m else None


def kind_of(column_type: str, binary_mode: BinaryMode = "bytes") -> str:
    """The portable kind of a declared type (``information_schema.COLUMNS.COLUMN_TYPE``)."""
    t = column_type.lower()
    base = base_type(t)
    if base == "bigint":
        return "decimal" if "unsigned" in t else "int"
    if base == "bit":
        kind = "bool" if (_length(t) or 1) == 1 else "bytes"
    else:
        kind = _KINDS.get(base, "other")
    if kind == "bytes" and binary_mode != "bytes":
        return "text"
    return kind


def _encode_bytes(mode: BinaryMode) -> Callable[[bytes], Any]:
    if mode == "base64":
        return lambda b: base64.b64encode(b).decode("ascii")
    if mode == "base64-url-safe":
        return lambda b: base64.urlsafe_b64encode(b).decode("ascii")
    if mode == "hex":
        return lambda b: b.hex()
    return lambda b: b


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):  # a binary column the library decoded with a charset
        return value.encode("utf-8", "surrogateescape")
    return bytes(value)


def _time(value: Any) -> Any:
    if not isinstance(value, timedelta):
        return value
    if timedelta(0) <= value < timedelta(days=1):
        return (datetime.min + value).time()
    return format_time(value)


def format_time(value: timedelta) -> str:
    """MySQL's text form of an out-of-day TIME (``-838:59:59``, ``100:00:00.5``)."""
    micros = value // timedelta(microseconds=1)
    sign = "-" if micros < 0 else ""
    micros = abs(micros)
    secs, frac = divmod(micros, 1_000_000)
    text = f"{sign}{secs // 3600:02d}:{secs % 3600 // 60:02d}:{secs % 60:02d}"
    return f"{text}.{frac:06d}" if frac else text


def _timestamptz(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _json_default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, Decimal):
        return float(obj)
    if isinstance(obj, (datetime, time)):
        return obj.isoformat()
    raise TypeError(type(obj).__name__)


def _json_keys(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {
            (k.decode("utf-8", "replace") if isinstance(k, bytes) else k): _json_keys(v)
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [_json_keys(v) for v in obj]
    return obj


def _json(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    # MySQL's binary JSON, already parsed: print it the way MySQL does (", " and ": ").
    return json.dumps(_json_keys(value), default=_json_default, ensure_ascii=False)


def _uuid(value: Any) -> Any:
    if isinstance(value, str) and len(value) == 36:
        return value
    # The binlog stores the 16 bytes like BINARY(16): trailing zero bytes stripped.
    return str(uuid.UUID(bytes=_as_bytes(value).ljust(16, b"\0")))


def _inet(value: Any) -> Any:
    """INET4/INET6 arrive as 4/16 bytes (trailing zero bytes stripped): print them as MariaDB."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return str(ipaddress.ip_address(value)) and value
    address = ipaddress.IPv6Address(_as_bytes(value).ljust(16, b"\0"))
    mapped = address.ipv4_mapped
    return f"::ffff:{mapped}" if mapped is not None else address.compressed


def converter(
    column_type: str, binary_mode: BinaryMode = "bytes", *, set_labels: list[str] | None = None
) -> Converter | None:
    """How to turn the library's value for this column into the event value.

    ``None`` means the library's value is already right (the common case, skipped on the hot
    path). ``None`` input values never reach a converter.
    """
    t = column_type.lower()
    base = base_type(t)
    encode = _encode_bytes(binary_mode)
    if base == "bigint" and "unsigned" in t:
        return Decimal
    if base == "timestamp":
        return _timestamptz
    if base == "time":
        return _time
    if base == "json":
        return _json
    if base == "uuid":
        return _uuid
    if base == "inet6":
        return _inet
    if base == "inet4":
        return lambda v: str(ipaddress.IPv4Address(_as_bytes(v).ljust(4, b"\0")))
    if base == "set":
        order = {label: i for i, label in enumerate(set_labels or [])}
        return lambda v: (
            ",".join(sorted(v, key=lambda s: order.get(s, len(order))))
            if isinstance(v, (set, frozenset))
            else v
        )
    if base == "bit":
        bits = _length(t) or 1
        if bits == 1:
            return lambda v: v in ("1", 1, True, b"\x01")
        nbytes = (bits + 7) // 8
        return lambda v: encode(int(v, 2).to_bytes(nbytes, "big")) if isinstance(v, str) else v
    if base == "binary":
        width = _length(t) or 1
        return lambda v: encode(_as_bytes(v).ljust(width, b"\0"))
    if _KINDS.get(base) == "bytes":
        return lambda v: encode(_as_bytes(v))
    return None
