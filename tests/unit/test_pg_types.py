"""Text-format value conversion of the postgresql source (pure: no database)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tideflow.connectors.sources.postgres.pgarray import parse_array
from tideflow.connectors.sources.postgres.types import (
    PgType,
    TypeMap,
    interval_to_iso,
    modifier,
)


def convert(oid: int, text: str, types: TypeMap | None = None) -> Any:
    m = (types or TypeMap()).mapping(oid)
    return text if m.convert is None else m.convert(text)


@pytest.mark.parametrize(
    ("oid", "text", "expected"),
    [
        (21, "-32768", -32768),
        (23, "2147483647", 2147483647),
        (20, "-9223372036854775808", -9223372036854775808),
        (700, "1.5", 1.5),
        (701, "-1.2345678901234567e+300", -1.2345678901234567e300),
        (701, "Infinity", float("inf")),
        (701, "-Infinity", float("-inf")),
        (1700, "12345678901234567890.0123456789", Decimal("12345678901234567890.0123456789")),
        (1700, "-0.0000000001", Decimal("-0.0000000001")),
        (16, "t", True),
        (16, "f", False),
        (25, 'héllo "wörld"', 'héllo "wörld"'),
        (1043, "abc", "abc"),
        (1042, "ab   ", "ab   "),
        (19, "pg_class", "pg_class"),
        (1082, "2024-02-29", date(2024, 2, 29)),
        (1082, "infinity", "infinity"),
        (1082, "-infinity", "-infinity"),
        (1082, "0044-03-15 BC", "0044-03-15 BC"),
        (1083, "13:45:01.5", time(13, 45, 1, 500000)),
        (1083, "24:00:00", "24:00:00"),
        (1266, "13:45:01+05:30", "13:45:01+05:30"),
        (1114, "2024-01-02 03:04:05.123456", datetime(2024, 1, 2, 3, 4, 5, 123456)),
        (1114, "infinity", "infinity"),
        (1184, "2024-01-02 03:04:05.1+00", datetime(2024, 1, 2, 3, 4, 5, 100000, tzinfo=UTC)),
        (1184, "2024-01-02 03:04:05+02", datetime(2024, 1, 2, 1, 4, 5, tzinfo=UTC)),
        (1184, "-infinity", "-infinity"),
        (1186, "P1Y2M3DT4H5M6.5S", "P1Y2M3DT4H5M6.5S"),
        (2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        (114, '{"a": [1, 2.50]}', '{"a": [1, 2.50]}'),
        (3802, '{"a": [1, 2.50]}', '{"a": [1, 2.50]}'),
        (869, "192.168.0.1/24", "192.168.0.1/24"),
        (790, "$1,234.50", "$1,234.50"),
    ],
    ids=lambda v: str(v)[:24] if not isinstance(v, int) else str(v),
)
def test_scalar_conversion(oid: int, text: str, expected: Any) -> None:
    value = convert(oid, text)
    assert value == expected
    assert type(value) is type(expected)
    if isinstance(expected, datetime) and expected.tzinfo is not None:
        assert value.utcoffset() == timedelta(0)


def test_float_nan_and_numeric_nan() -> None:
    assert convert(701, "NaN") != convert(701, "NaN")  # a float NaN
    assert convert(1700, "NaN").is_nan()
    assert convert(1700, "Infinity") == Decimal("Infinity")


def test_numeric_keeps_full_precision() -> None:
    text = "98765432109876543210.12345678901234567890"
    assert str(convert(1700, text)) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("P1Y2M3DT4H5M6.5S", "P1Y2M3DT4H5M6.5S"),
        ("1 year 2 mons 3 days 04:05:06.5", "P1Y2M3DT4H5M6.5S"),
        ("-1 days +02:03:00", "P-1DT2H3M"),
        ("-00:00:01", "PT-1S"),
        ("00:00:00", "PT0S"),
        ("3 days", "P3D"),
        ("1 year", "P1Y"),
        ("100:00:00.000001", "PT100H0.000001S"),
    ],
)
def test_interval_iso(text: str, expected: str) -> None:
    assert interval_to_iso(text) == expected


@pytest.mark.parametrize(
    ("mode", "kind", "expected"),
    [
        ("bytes", "bytes", b"\xde\xad\x00\xff"),
        ("base64", "text", "3q0A/w=="),
        ("base64-url-safe", "text", "3q0A_w=="),
        ("hex", "text", "dead00ff"),
    ],
)
def test_bytea_modes(mode: Any, kind: str, expected: Any) -> None:
    types = TypeMap(binary_mode=mode)
    assert types.mapping(17).kind == kind
    assert convert(17, "\\xdead00ff", types) == expected


def test_bytea_escape_format() -> None:
    assert convert(17, "a\\\\b\\000\\377") == b"a\\b\x00\xff"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{}", []),
        ("{1,2,3}", ["1", "2", "3"]),
        ('{NULL,null,"NULL"}', [None, None, "NULL"]),
        ('{"a b","c,d","e\\"f","g\\\\h",""}', ["a b", "c,d", 'e"f', "g\\h", ""]),
        ("{{1,2},{3,NULL}}", [["1", "2"], ["3", None]]),
        ("{{{1}},{{2}}}", [[["1"]], [["2"]]]),
        ("[0:2]={7,8,9}", ["7", "8", "9"]),
        ('{"{braces}","}"}', ["{braces}", "}"]),
        ("{héllo,wörld}", ["héllo", "wörld"]),
    ],
)
def test_parse_array(text: str, expected: list[Any]) -> None:
    assert parse_array(text) == expected


def test_parse_array_box_delimiter() -> None:
    assert parse_array("{(1,1),(0,0);(2,2),(1,1)}", delim=";") == ["(1,1),(0,0)", "(2,2),(1,1)"]


@pytest.mark.parametrize("text", ["", "1,2", "{1,2", '{"a}'])
def test_parse_array_rejects_garbage(text: str) -> None:
    with pytest.raises((ValueError, IndexError)):
        parse_array(text)


def test_arrays_convert_elements() -> None:
    assert convert(1007, "{{1,NULL},{3,4}}") == [[1, None], [3, 4]]
    assert convert(1009, '{"x y",NULL}') == ["x y", None]
    assert convert(1231, "{1.10,NaN}")[0] == Decimal("1.10")
    assert convert(1182, "{2024-01-01,infinity}") == [date(2024, 1, 1), "infinity"]
    assert convert(1001, '{"\\\\x0102",NULL}') == [b"\x01\x02", None]
    assert convert(1000, "{t,f}") == [True, False]
    assert convert(1185, '{"2024-01-01 00:00:00+00"}') == [datetime(2024, 1, 1, tzinfo=UTC)]


def catalog(types: dict[int, PgType]) -> TypeMap:
    asked: list[set[int]] = []

    def lookup(oids: Any) -> dict[int, PgType]:
        asked.append(set(oids))
        return {o: types[o] for o in oids if o in types}

    tm = TypeMap(lookup)
    tm.asked = asked  # type: ignore[attr-defined]
    return tm


def test_enum_domain_and_their_arrays() -> None:
    tm = catalog(
        {
            50001: PgType(50001, "mood", typtype="e", category="E"),
            50002: PgType(50002, "_mood", category="A", elem_oid=50001),
            50003: PgType(50003, "posint", typtype="d", category="N", base_oid=23),
            50004: PgType(50004, "_posint", category="A", elem_oid=50003),
            50005: PgType(50005, "money2", typtype="d", base_oid=50003),  # domain over domain
            50006: PgType(50006, "citext", category="S"),
            50007: PgType(50007, "point3", typtype="c", category="C"),
        }
    )
    tm.prefetch([50001, 50002, 50003, 50004, 50005, 50006, 50007])
    assert (tm.mapping(50001).kind, tm.type_name(50001, -1)) == ("enum", "mood")
    assert convert(50001, "happy", tm) == "happy"
    assert (tm.mapping(50002).kind, tm.type_name(50002, -1)) == ("array", "mood[]")
    assert convert(50002, "{happy,NULL}", tm) == ["happy", None]
    assert (tm.mapping(50003).kind, tm.type_name(50003, -1)) == ("int", "posint")
    assert convert(50003, "42", tm) == 42
    assert convert(50004, "{1,2}", tm) == [1, 2]
    assert convert(50005, "7", tm) == 7
    assert tm.mapping(50006).kind == "text"
    assert (tm.mapping(50007).kind, convert(50007, "(1,2,3)", tm)) == ("other", "(1,2,3)")
    assert tm.mapping(99999).kind == "other"  # unknown to the catalog: kept as text
    assert convert(99999, "whatever", tm) == "whatever"


@pytest.mark.parametrize(
    ("oid", "typmod", "expected"),
    [
        (1700, (12 << 16 | 2) + 4, "numeric(12,2)"),
        (1700, -1, "numeric"),
        (1043, 24, "varchar(20)"),
        (1042, 5, "bpchar(1)"),
        (1184, 3, "timestamptz(3)"),
        (1184, -1, "timestamptz"),
        (1007, -1, "int4[]"),
        (1231, (10 << 16 | 3) + 4, "numeric(10,3)[]"),
        (1015, 14, "varchar(10)[]"),
        (1186, 0xFFFF0003 & 0x7FFFFFFF, "interval(3)"),
    ],
)
def test_type_names(oid: int, typmod: int, expected: str) -> None:
    assert TypeMap().type_name(oid, typmod) == expected


def test_numeric_negative_scale_modifier() -> None:
    # numeric(5,-2) as Postgres 15 encodes it: scale in an 11-bit signed field
    typmod = ((5 << 16) | (-2 & 0x7FF)) + 4
    assert modifier(1700, typmod) == "(5,-2)"


def test_timestamptz_other_offsets_become_utc() -> None:
    value = convert(1184, "2024-06-01 12:00:00-07")
    assert value == datetime(2024, 6, 1, 19, 0, tzinfo=UTC)
    assert value.tzinfo == UTC
