"""Text-format value conversion by type OID, and each type's portable column kind.

pgoutput sends every value in its text output form. The replication session pins the output
styles (``DateStyle=ISO``, ``IntervalStyle=iso_8601``, ``TimeZone=UTC``,
``bytea_output=hex``, ``extra_float_digits=3``; see :mod:`.connection`), so converters parse
one well-known form and stay cheap. Converters never drop a value: what Python cannot
represent (``infinity`` dates, BC years, ``24:00:00``) is kept as the Postgres text.
Values follow :data:`tideflow.events.COLUMN_KINDS`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import partial
from typing import Any, Final, Literal

from tideflow.connectors.sources.postgres.pgarray import parse_array
from tideflow.copytext import Parse

Converter = Callable[[str], Any]
BinaryMode = Literal["bytes", "base64", "base64-url-safe", "hex"]


@dataclass(frozen=True, slots=True)
class PgType:
    """The ``pg_type`` facts conversion needs, for types not built in."""

    oid: int
    name: str
    typtype: str = "b"  # b base, d domain, e enum, c composite, r range, m multirange, p pseudo
    category: str = ""  # typcategory: A array, S string, ...
    base_oid: int = 0  # domains: the type they constrain
    elem_oid: int = 0  # arrays: the element type
    delim: str = ","


@dataclass(frozen=True, slots=True)
class TypeMapping:
    """How values of one type OID become Python values.

    ``convert`` is ``None`` when the text is the value (text, uuid, json, enum, other), so the
    hot path can skip a call. ``name`` is the type's own name without modifiers (``int4[]``).
    """

    name: str
    kind: str
    convert: Converter | None
    base_oid: int  # the built-in type behind domains/arrays elements, for modifiers


def _bool(text: str) -> bool:
    return text == "t"


def _date(text: str) -> date | str:
    try:
        return date.fromisoformat(text)
    except ValueError:  # infinity, -infinity, BC dates, years past 9999
        return text


def _time(text: str) -> time | str:
    try:
        return time.fromisoformat(text)
    except ValueError:  # 24:00:00 is a valid Postgres time
        return text


def _timestamp(text: str) -> datetime | str:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return text


def _timestamptz(text: str) -> datetime | str:
    try:
        value = datetime.fromisoformat(text)
        if value.tzinfo is UTC:
            return value
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    except (ValueError, OverflowError):
        return text


#: The timestamptz converter; :mod:`.codegen` inlines its common (UTC) case.
TIMESTAMPTZ: Final = _timestamptz


def parse_of(convert: Converter | None) -> Parse:
    """What a converter of this module does to a value's text, as :mod:`tideflow.copytext`
    describes it to destinations (Postgres prints integers and numerics in the forms that
    module's ``int`` and ``decimal`` promise)."""
    if convert is None:
        return "text"
    if convert is int:
        return "int"
    if convert is Decimal:
        return "decimal"
    if convert is _timestamptz:
        return "timestamptz"
    return "other"


_PG_INTERVAL = re.compile(
    r"^(?:(?P<y>[+-]?\d+) years? ?)?(?:(?P<mo>[+-]?\d+) mons? ?)?(?:(?P<d>[+-]?\d+) days? ?)?"
    r"(?:(?P<sign>[+-])?(?P<h>\d+):(?P<mi>\d+):(?P<s>\d+(?:\.\d+)?))?$"
)


def interval_to_iso(text: str) -> str:
    """ISO-8601 duration text, as Postgres' ``iso_8601`` interval style prints it.

    The replication session already asks for that style, so this normally returns its input;
    the ``postgres`` style is converted for sessions that could not set it. Each field keeps
    its own sign, as Postgres does (``P-1DT2H``).
    """
    if text.startswith("P"):
        return text
    m = _PG_INTERVAL.match(text.strip())
    if m is None:
        return text
    sign = -1 if m["sign"] == "-" else 1
    date_part = "".join(
        f"{int(m[g])}{u}" for g, u in (("y", "Y"), ("mo", "M"), ("d", "D")) if m[g] and int(m[g])
    )
    time_part = ""
    if m["h"] is not None:
        seconds = m["s"].rstrip("0").rstrip(".") if "." in m["s"] else m["s"]
        for value, unit in ((m["h"], "H"), (m["mi"], "M"), (seconds, "S")):
            if float(value):
                number = value.lstrip("0") or "0"
                number = "0" + number if number.startswith(".") else number
                time_part += f"{'-' if sign < 0 else ''}{number}{unit}"
    if not date_part and not time_part:
        return "PT0S"
    return "P" + date_part + ("T" + time_part if time_part else "")


def _bytea(text: str) -> bytes:
    if text.startswith("\\x"):
        return bytes.fromhex(text[2:])
    return _bytea_escape(text)


def _bytea_escape(text: str) -> bytes:
    """Decode the legacy ``escape`` bytea output (``\\\\`` and ``\\ooo`` octal escapes)."""
    out = bytearray()
    raw = text.encode("latin-1", "surrogateescape")
    i = 0
    while i < len(raw):
        if raw[i] == 0x5C:  # backslash
            if raw[i + 1 : i + 2] == b"\\":
                out.append(0x5C)
                i += 2
            else:
                out.append(int(raw[i + 1 : i + 4], 8))
                i += 4
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


def bytea_converter(mode: BinaryMode) -> tuple[str, Converter]:
    """(kind, converter) for bytea under ``binary.handling.mode``.

    String modes report kind ``text``: the value is then an encoded string, and destinations
    must store it as one.
    """
    if mode == "bytes":
        return "bytes", _bytea
    if mode == "base64":
        return "text", lambda t: base64.b64encode(_bytea(t)).decode("ascii")
    if mode == "base64-url-safe":
        return "text", lambda t: base64.urlsafe_b64encode(_bytea(t)).decode("ascii")
    return "text", lambda t: t[2:] if t.startswith("\\x") else _bytea(t).hex()


def _array(convert: Converter | None, delim: str, text: str) -> list[Any] | str:
    try:
        return parse_array(text, convert, delim)
    except (ValueError, IndexError):  # not an array literal after all: keep the text
        return text


# oid: (name, kind, converter); bytea (17) is configured per source.
SCALARS: Final[dict[int, tuple[str, str, Converter | None]]] = {
    16: ("bool", "bool", _bool),
    18: ("char", "text", None),
    19: ("name", "text", None),
    20: ("int8", "int", int),
    21: ("int2", "int", int),
    23: ("int4", "int", int),
    25: ("text", "text", None),
    26: ("oid", "int", int),
    114: ("json", "json", None),
    142: ("xml", "other", None),
    650: ("cidr", "other", None),
    700: ("float4", "float", float),
    701: ("float8", "float", float),
    790: ("money", "other", None),
    829: ("macaddr", "other", None),
    869: ("inet", "other", None),
    1042: ("bpchar", "text", None),
    1043: ("varchar", "text", None),
    1082: ("date", "date", _date),
    1083: ("time", "time", _time),
    1114: ("timestamp", "timestamp", _timestamp),
    1184: ("timestamptz", "timestamptz", _timestamptz),
    1186: ("interval", "interval", interval_to_iso),
    1266: ("timetz", "timetz", None),
    1560: ("bit", "other", None),
    1562: ("varbit", "other", None),
    1700: ("numeric", "decimal", Decimal),
    2950: ("uuid", "uuid", None),
    3802: ("jsonb", "json", None),
}
BYTEA = 17
# array oid → element oid
ARRAYS: Final[dict[int, int]] = {
    1000: 16, 1001: 17, 1002: 18, 1003: 19, 1016: 20, 1005: 21, 1007: 23, 1009: 25, 1028: 26,
    199: 114, 143: 142, 651: 650, 1021: 700, 1022: 701, 791: 790, 1040: 829, 1041: 869,
    1014: 1042, 1015: 1043, 1182: 1082, 1183: 1083, 1115: 1114, 1185: 1184, 1187: 1186,
    1270: 1266, 1561: 1560, 1563: 1562, 1231: 1700, 2951: 2950, 3807: 3802,
}  # fmt: skip

TypeLookup = Callable[[Collection[int]], Mapping[int, PgType]]


class TypeMap:
    """Resolves type OIDs to :class:`TypeMapping`, asking ``lookup`` about unknown OIDs once.

    ``lookup`` (a catalog query in production) returns the ``pg_type`` rows it found; OIDs it
    does not know become kind ``other`` (text kept). Not thread-safe: owned by one source.
    """

    def __init__(self, lookup: TypeLookup | None = None, binary_mode: BinaryMode = "bytes"):
        self._lookup = lookup
        self._types: dict[int, PgType] = {}
        self._cache: dict[int, TypeMapping] = {}
        kind, convert = bytea_converter(binary_mode)
        self._bytea = TypeMapping("bytea", kind, convert, BYTEA)

    def prefetch(self, oids: Collection[int]) -> None:
        """Load every unknown OID (and the bases/elements they refer to) in few round trips."""
        pending = {o for o in oids if not self._known(o)}
        while pending and self._lookup is not None:
            found = self._lookup(pending)
            self._types.update(found)
            for oid in pending - found.keys():  # unknown to the catalog too: remember that
                self._types[oid] = PgType(oid, f"oid{oid}", typtype="?")
            pending = {
                ref
                for t in found.values()
                for ref in (t.base_oid, t.elem_oid)
                if ref and not self._known(ref)
            }

    def _known(self, oid: int) -> bool:
        return oid in SCALARS or oid in ARRAYS or oid == BYTEA or oid in self._types

    def mapping(self, oid: int) -> TypeMapping:
        cached = self._cache.get(oid)
        if cached is None:
            self.prefetch((oid,))
            cached = self._cache[oid] = self._resolve(oid, depth=0)
        return cached

    def _resolve(self, oid: int, depth: int) -> TypeMapping:
        if oid == BYTEA:
            return self._bytea
        if oid in SCALARS:
            name, kind, convert = SCALARS[oid]
            return TypeMapping(name, kind, convert, oid)
        if oid in ARRAYS:
            return self._array_of(self._resolve(ARRAYS[oid], depth + 1), ",")
        t = self._types.get(oid)
        if t is None or depth > 16:  # depth guards against a cyclic catalog answer
            return TypeMapping(t.name if t else f"oid{oid}", "other", None, oid)
        if t.typtype == "d" and t.base_oid:
            base = self._resolve(t.base_oid, depth + 1)
            return TypeMapping(t.name, base.kind, base.convert, base.base_oid)
        if t.typtype == "e":
            return TypeMapping(t.name, "enum", None, oid)
        if t.category == "A" and t.elem_oid:
            return self._array_of(self._resolve(t.elem_oid, depth + 1), t.delim)
        if t.typtype == "b" and t.category == "S":  # citext and other string types
            return TypeMapping(t.name, "text", None, oid)
        return TypeMapping(t.name, "other", None, oid)

    @staticmethod
    def _array_of(elem: TypeMapping, delim: str) -> TypeMapping:
        return TypeMapping(
            elem.name + "[]", "array", partial(_array, elem.convert, delim), elem.base_oid
        )

    def type_name(self, oid: int, typmod: int) -> str:
        """The source type with modifiers, e.g. ``numeric(12,2)``, ``varchar(20)[]``."""
        m = self.mapping(oid)
        suffix = modifier(m.base_oid, typmod)
        if m.kind == "array":
            return m.name[:-2] + suffix + "[]"
        return m.name + suffix


def modifier(oid: int, typmod: int) -> str:
    """Postgres' ``typmodout`` text for the built-in types that take a modifier."""
    if typmod < 0:
        return ""
    if oid == 1700:
        # Postgres 15 allows negative scales: an 11-bit signed field.
        precision, scale = ((typmod - 4) >> 16) & 0xFFFF, (((typmod - 4) & 0x7FF) ^ 1024) - 1024
        return f"({precision},{scale})"
    if oid in (1042, 1043):
        return f"({typmod - 4})"
    if oid in (1083, 1266, 1114, 1184, 1560, 1562):
        return f"({typmod})"
    if oid == 1186:
        precision = typmod & 0xFFFF
        return f"({precision})" if precision != 0xFFFF else ""
    return ""
