"""Type mapping and value conversion of the mysql source; positions."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest

from tideflow.connectors.sources.mysql.position import (
    BinlogPosition,
    format_mariadb_gtids,
    from_dict,
    parse_mariadb_gtids,
)
from tideflow.connectors.sources.mysql.types import converter, format_time, kind_of
from tideflow.engine.positions import before
from tideflow.errors import TerminalError
from tideflow.events import COLUMN_KINDS


@pytest.mark.parametrize(
    ("column_type", "kind"),
    [
        ("tinyint(4)", "int"),
        ("smallint(5) unsigned", "int"),
        ("int(10) unsigned", "int"),
        ("bigint(20)", "int"),
        ("bigint(20) unsigned", "decimal"),
        ("decimal(12,2)", "decimal"),
        ("float", "float"),
        ("double", "float"),
        ("datetime(6)", "timestamp"),
        ("timestamp(3)", "timestamptz"),
        ("date", "date"),
        ("time(6)", "time"),
        ("year(4)", "int"),
        ("char(5)", "text"),
        ("varchar(300)", "text"),
        ("longtext", "text"),
        ("json", "json"),
        ("enum('a','b')", "enum"),
        ("set('x','y')", "text"),
        ("bit(1)", "bool"),
        ("bit(12)", "bytes"),
        ("blob", "bytes"),
        ("binary(4)", "bytes"),
        ("varbinary(10)", "bytes"),
        ("uuid", "uuid"),
        ("geometry", "bytes"),
        ("inet6", "text"),
        ("mystery", "other"),
    ],
)
def test_kinds(column_type: str, kind: str) -> None:
    assert kind_of(column_type) == kind
    assert kind in COLUMN_KINDS


def test_binary_modes_make_text() -> None:
    assert kind_of("blob", "hex") == "text"
    assert converter("blob", "hex")(b"\x01\xff") == "01ff"  # type: ignore[misc]
    assert converter("varbinary(4)", "base64")(b"\xff\xfe") == "//4="  # type: ignore[misc]
    assert converter("blob", "base64-url-safe")(b"\xff\xfe") == "__4="  # type: ignore[misc]


def test_converters() -> None:
    def conv(t: str, v: object, **kw: object) -> object:
        c = converter(t, **kw)  # type: ignore[arg-type]
        return v if c is None else c(v)

    assert conv("bigint unsigned", 2**64 - 1) == Decimal(2**64 - 1)
    assert conv("timestamp(3)", datetime(2024, 1, 1)) == datetime(2024, 1, 1, tzinfo=UTC)
    assert conv("time", timedelta(hours=1, seconds=2)) == time(1, 0, 2)
    assert conv("time", timedelta(hours=-1)) == "-01:00:00"
    assert conv("time", timedelta(hours=100, microseconds=5)) == "100:00:00.000005"
    assert conv("json", {"a": [1, 2.5], b"k": None}) == '{"a": [1, 2.5], "k": null}'
    assert conv("json", '{"a":1}') == '{"a":1}'
    assert conv("set('x','y','z')", {"z", "x"}, set_labels=["x", "y", "z"]) == "x,z"
    assert conv("bit(1)", "1") is True and conv("bit(1)", "0") is False
    assert conv("bit(12)", "101010101010") == bytes([0b1010, 0b10101010])
    assert conv("binary(4)", b"\x01") == b"\x01\x00\x00\x00"
    assert conv("uuid", bytes(range(16))) == "00010203-0405-0607-0809-0a0b0c0d0e0f"
    assert converter("int(11)") is None and converter("varchar(3)") is None


def test_format_time() -> None:
    assert format_time(-timedelta(hours=838, minutes=59, seconds=59)) == "-838:59:59"


def test_positions_parse_and_order() -> None:
    p = from_dict({"binlog_file": "mariadb-bin.000010", "binlog_pos": 120, "gtid": "0-1-9"})
    assert p == BinlogPosition("mariadb-bin.000010", 120, "0-1-9")
    assert from_dict(p.to_dict()) == p
    assert from_dict({"file": "b.000001", "pos": "4"}) == BinlogPosition("b.000001", 4)
    for bad in ({}, {"binlog_file": "x", "binlog_pos": 2}, {"lsn": 1}, {"file": "", "pos": 9}):
        with pytest.raises(TerminalError):
            from_dict(bad)
    # The runtime orders positions by values in sorted key order: GTID text must not decide.
    a = BinlogPosition("mariadb-bin.000010", 900, "0-1-9").to_dict()
    b = BinlogPosition("mariadb-bin.000010", 1000, "0-1-10").to_dict()
    c = BinlogPosition("mariadb-bin.000011", 4, "0-1-10").to_dict()
    assert before(a, b) and before(b, c) and not before(b, a)


def test_mariadb_gtid_state() -> None:
    state = parse_mariadb_gtids("1-2-30, 0-1-9")
    assert state == {0: (1, 9), 1: (2, 30)}
    assert format_mariadb_gtids(state) == "0-1-9,1-2-30"
    with pytest.raises(ValueError):
        parse_mariadb_gtids("0-1")


@pytest.mark.parametrize(
    ("column_type", "raw", "shown"),
    [
        ("inet6", bytes(15) + b"\x01", "::1"),
        ("inet6", bytes(10) + b"\xff\xff\x0a\x00\x00\x01", "::ffff:10.0.0.1"),
        ("inet6", bytes.fromhex("20010db8"), "2001:db8::"),  # trailing zeros stripped
        ("inet6", "::1", "::1"),
        ("inet4", b"\x0a\x00\x00", "10.0.0.0"),
        (
            "uuid",
            bytes.fromhex("123e4567e89b12d3a45657d4e92984"),
            "123e4567-e89b-12d3-a456-57d4e9298400",
        ),
    ],
    ids=["loopback", "v4-mapped", "stripped", "already-text", "inet4-stripped", "uuid-stripped"],
)
def test_fixed_width_binary_types_are_repadded(column_type: str, raw: object, shown: str) -> None:
    convert = converter(column_type)
    assert convert is not None and convert(raw) == shown
