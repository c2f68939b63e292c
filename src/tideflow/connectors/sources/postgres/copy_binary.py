"""Rows of ``COPY ... TO STDOUT (FORMAT binary)``, read back into the values a streamed change
carries (ADR 0005).

A row's fields are each type's binary ``send`` form (framing: :mod:`tideflow.copybinary`).
For the built-in types in :data:`TEXT_OF` this module turns those bytes into the output text
the same value has in the replication session's styles (``DateStyle=ISO``, ``TimeZone=UTC``,
see :mod:`.connection`), so the same :class:`~.types.TypeMap` converters apply and a binary
chunk decodes to exactly what the COPY text of the same rows decodes to. A table with a
column of any other type is read as text.

Binary chunks travel only to destinations that load them as they are (the Postgres
destination); this decoding serves the rare rows that leave the chunk: keys for progress and
reconciliation, and rows re-emitted as events (a window merge, the per-row fallback).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from tideflow.connectors.sources.postgres.types import BYTEA, Converter
from tideflow.copybinary import fields

__all__ = ["TEXT_OF", "BinaryLayout"]

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")
_F64 = struct.Struct(">d")
_NUMERIC = struct.Struct(">hhHh")

_USECS_PER_DAY = 86_400_000_000
_POSTGRES_EPOCH_JDATE = 2_451_545  # Julian day of 2000-01-01, where binary dates count from
_NUMERIC_NEG, _NUMERIC_NAN, _NUMERIC_PINF, _NUMERIC_NINF = 0x4000, 0xC000, 0xD000, 0xF000


def _j2date(jd: int) -> tuple[int, int, int]:
    """Year, month, day of a Julian day number (Postgres' ``j2date``; year <= 0 is BC)."""
    julian = jd + 32044
    quad = julian // 146097
    extra = (julian - quad * 146097) * 4 + 3
    julian += 60 + quad * 3 + extra // 146097
    quad = julian // 1461
    julian -= quad * 1461
    y = julian * 4 // 1461
    julian = ((julian + 305) % 365 if y != 0 else (julian + 306) % 366) + 123
    y += quad * 4
    quad = julian * 2141 // 65536
    day = julian - 7834 * quad // 256
    month = (quad + 10) % 12 + 1
    return y - 4800, month, day


def _ymd(days: int) -> tuple[str, bool]:
    """``YYYY-MM-DD`` of days since 2000-01-01, and whether it is BC."""
    year, month, day = _j2date(days + _POSTGRES_EPOCH_JDATE)
    bc = year <= 0
    return f"{1 - year if bc else year:04d}-{month:02d}-{day:02d}", bc


def _date(raw: bytes) -> str:
    (days,) = _I32.unpack(raw)
    if days == 0x7FFFFFFF:
        return "infinity"
    if days == -0x80000000:
        return "-infinity"
    text, bc = _ymd(days)
    return text + " BC" if bc else text


def _stamp(raw: bytes, zone: str) -> str:
    (usecs,) = _I64.unpack(raw)
    if usecs == 0x7FFFFFFFFFFFFFFF:
        return "infinity"
    if usecs == -0x8000000000000000:
        return "-infinity"
    days, time_of_day = divmod(usecs, _USECS_PER_DAY)
    ymd, bc = _ymd(days)
    seconds, micros = divmod(time_of_day, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    text = f"{ymd} {hour:02d}:{minute:02d}:{second:02d}"
    if micros:
        text += f".{micros:06d}".rstrip("0")
    text += zone
    return text + " BC" if bc else text


def _numeric(raw: bytes) -> str:
    ndigits, weight, sign, dscale = _NUMERIC.unpack_from(raw, 0)
    if sign == _NUMERIC_NAN:
        return "NaN"
    if sign == _NUMERIC_PINF:
        return "Infinity"
    if sign == _NUMERIC_NINF:
        return "-Infinity"
    groups = struct.unpack_from(f">{ndigits}h", raw, 8)
    digits = "".join(f"{g:04d}" for g in groups)
    point = (weight + 1) * 4  # digits before the decimal point
    if point <= 0:
        digits, point = "0" * -point + digits, 0
    elif len(digits) < point:
        digits += "0" * (point - len(digits))
    whole = digits[:point].lstrip("0") or "0"
    text = whole if dscale <= 0 else f"{whole}.{digits[point:][:dscale].ljust(dscale, '0')}"
    return "-" + text if sign == _NUMERIC_NEG else text


def _utf8(raw: bytes) -> str:
    return raw.decode()


#: type oid → the value's output text from its binary form, for the types binary chunks carry:
#: those whose binary form loads into the type the Postgres destination maps them to (the same
#: type; text for varchar, char and name). Left out on purpose: json and oid (mapped to jsonb
#: and bigint, whose binary input differs) and float4 (its shortest text is not Python's
#: ``repr`` of the double).
TEXT_OF: Final[dict[int, Callable[[bytes], str]]] = {
    16: lambda raw: "t" if raw == b"\x01" else "f",
    BYTEA: lambda raw: "\\x" + raw.hex(),
    19: _utf8,
    20: lambda raw: str(_I64.unpack(raw)[0]),
    21: lambda raw: str(_I16.unpack(raw)[0]),
    23: lambda raw: str(_I32.unpack(raw)[0]),
    25: _utf8,
    701: lambda raw: repr(_F64.unpack(raw)[0]),  # float() reads back the same double
    1042: _utf8,
    1043: _utf8,
    1082: _date,
    1114: lambda raw: _stamp(raw, ""),
    1184: lambda raw: _stamp(raw, "+00"),
    1700: _numeric,
    2950: lambda raw: str(uuid.UUID(bytes=raw)),
    3802: lambda raw: raw[1:].decode(),  # a version byte (1), then the text
}


@dataclass(frozen=True)
class BinaryLayout:
    """The field order of a binary chunk's rows: the ``nkey`` key columns first, then the others.

    The binary counterpart of :class:`.copy_lines.Layout`: ``decode``, ``key`` and ``key_text``
    give what the text layout gives for the same row."""

    columns: tuple[str, ...]
    oids: tuple[int, ...]
    converters: tuple[Converter | None, ...]
    nkey: int
    _fields: tuple[tuple[str, Callable[[bytes], str], Converter | None], ...] = field(
        init=False, repr=False
    )

    def __post_init__(self) -> None:
        described = tuple(
            (name, TEXT_OF[oid], convert)
            for name, oid, convert in zip(self.columns, self.oids, self.converters, strict=True)
        )
        object.__setattr__(self, "_fields", described)

    @staticmethod
    def supports(oids: Iterable[int]) -> bool:
        return all(oid in TEXT_OF for oid in oids)

    def decode(self, row: bytes) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for (name, text_of, convert), raw in zip(self._fields, fields(row), strict=True):
            if raw is None:
                out[name] = None
                continue
            text = text_of(raw)
            out[name] = convert(text) if convert is not None else text
        return out

    def key(self, row: bytes) -> tuple[Any, ...]:
        texts = self.key_text(row)
        return tuple(
            t if t is None or convert is None else convert(t)
            for (_, _, convert), t in zip(self._fields, texts, strict=False)
        )

    def key_text(self, row: bytes) -> tuple[str, ...]:
        """The key columns' output text (None stays None for a NULL surrogate key part)."""
        pairs = zip(self._fields, fields(row, self.nkey), strict=False)
        texts = (None if r is None else text_of(r) for (_, text_of, _), r in pairs)
        return tuple(texts)  # type: ignore[arg-type]
