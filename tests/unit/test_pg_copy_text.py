"""COPY text rendering of the Postgres destination (no server needed).

The renderer must send what psycopg's ``write_row`` sent before, except for the timestamp
fast path (same instant, another spelling), so most cases compare with psycopg's own
formatter.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from psycopg import adapt

# psycopg's row formatter for COPY text (the reference for what write_row sends).
from psycopg._copy_base import format_row_text

from tideflow.connectors.destinations.postgres import copy_text
from tideflow.connectors.destinations.postgres.copy_text import RowRenderer, escape


def _psycopg(row: tuple[Any, ...]) -> str:
    out = bytearray()
    format_row_text(row, adapt.Transformer(None), out)
    return out.decode()


def _ours(types: list[str], row: tuple[Any, ...]) -> str:
    return RowRenderer(None, "utf-8").render(types)(row)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("", ""),
        ("tab\there", "tab\\there"),
        ("new\nline", "new\\nline"),
        ("carriage\rreturn", "carriage\\rreturn"),
        ("back\\slash", "back\\\\slash"),
        ("\\N", "\\\\N"),  # the text "\N" must not read as NULL
        ("\b\v\f", "\\b\\v\\f"),
        ("ünïcödé ✓ 字", "ünïcödé ✓ 字"),
        ("nbsp\u00a0x", "nbsp\u00a0x"),  # not printable for Python, needs no escape
        ("\x01ctl", "\x01ctl"),
    ],
)
def test_escape(text: str, expected: str) -> None:
    assert escape(text) == expected


CASES: list[tuple[str, Any]] = [
    ("bigint", 0),
    ("bigint", -(2**63)),
    ("integer", 42),
    ("bigint", True),  # not an int for the fast path: psycopg's dumper
    ("numeric(12,2)", Decimal("12.30")),
    ("numeric", Decimal("-0.000001")),
    ("numeric", Decimal("1E+3")),
    ("numeric", Decimal("NaN")),
    ("numeric", Decimal("Infinity")),
    ("numeric", Decimal("-Infinity")),
    ("numeric", 7),
    ("text", "a\tb\\c\nd\re"),
    ("text", "\\N"),
    ("jsonb", '{"a": "x\\ny", "b": [1, 2]}'),
    ("uuid", "6f1c1f5e-8c53-4c3b-9a8e-0c1f7e1d2a3b"),
    ("uuid", uuid.UUID("6f1c1f5e-8c53-4c3b-9a8e-0c1f7e1d2a3b")),
    ("interval", "P1DT2H"),
    ("boolean", True),
    ("boolean", False),
    ("boolean DEFAULT false", True),
    ("bytea", b"\x00\\\t\xff"),
    ("bytea", b""),
    ("date", date(2024, 2, 29)),
    ("time without time zone", time(23, 59, 59, 999999)),
    ("double precision", 1.5),
    ("double precision", math.inf),
    ("double precision", -math.inf),
    ("double precision", math.nan),
    ("integer[]", [1, None, 3]),
    ("text[]", ["a b", 'q"uote', "back\\slash", "tab\t", None, ""]),
    ("integer[]", [[1, 2], [3, 4]]),
    ("integer[]", []),
    ("numeric[]", [Decimal("1.5"), None]),
    (
        "timestamp with time zone",
        datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    ),
    ("timestamp with time zone", datetime(2024, 1, 2, 3, 4, 5)),  # naive: psycopg's form
    ("timestamp without time zone", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
    ("timestamp with time zone", "infinity"),  # a source's text form of a value Python lacks
]


@pytest.mark.parametrize(("dest_type", "value"), CASES)
def test_same_text_as_psycopg(dest_type: str, value: Any) -> None:
    assert _ours([dest_type], (value,)) == _psycopg((value,))


@pytest.mark.parametrize(("dest_type", "value"), CASES)
def test_null_in_every_type(dest_type: str, value: Any) -> None:
    assert _ours([dest_type, dest_type], (None, value)).startswith("\\N\t")


def test_whole_row() -> None:
    types = ["bigint", "integer", "numeric(12,2)", "text", "bigint", "boolean"]
    row = (1, None, Decimal("3.25"), "x\ty", 1700000000000, False)
    assert _ours(types, row) == _psycopg(row) == "1\t\\N\t3.25\tx\\ty\t1700000000000\tf\n"


def test_no_columns() -> None:
    assert _ours([], ()) == _psycopg(()) == "\n"


@pytest.mark.parametrize(
    "value",
    [
        datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
        datetime(2024, 1, 2, 3, 4, 5, 120000, tzinfo=UTC),
        datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
@pytest.mark.parametrize(
    "dest_type", ["timestamptz", "timestamp with time zone", "timestamp(3) with time zone"]
)
def test_utc_timestamps(value: datetime, dest_type: str) -> None:
    renderer = RowRenderer(None, "utf-8")
    render = renderer.render([dest_type])
    # First a miss (isoformat), then a hit of the cached second: both the same instant.
    for _ in range(2):
        text = render((value,))
        assert text.endswith("\n")
        assert datetime.fromisoformat(text[:-1]) == value
        assert text[:19] == value.strftime("%Y-%m-%d %H:%M:%S").rjust(19, "0")


def test_naive_timestamps() -> None:
    render = RowRenderer(None, "utf-8").render(["timestamp without time zone"])
    for value in (datetime(2024, 1, 2, 3, 4, 5, 6), datetime(2024, 1, 2, 3, 4, 5)):
        for _ in range(2):
            text = render((value,))[:-1]
            assert datetime.fromisoformat(text) == value
            assert "+" not in text


def test_second_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(copy_text, "SECONDS_CACHED", 3)
    render = RowRenderer(None, "utf-8").render(["timestamptz"])
    start = datetime(2024, 1, 1, tzinfo=UTC)
    for i in range(20):
        value = start + timedelta(seconds=i % 7, microseconds=i)
        assert datetime.fromisoformat(render((value,))[:-1]) == value


def test_lines_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(copy_text, "CHUNK_ROWS", 3)
    rows = [(i, f"r{i}") for i in range(7)]
    chunks = list(RowRenderer(None, "utf-8").lines(["bigint", "text"], rows))
    assert len(chunks) == 3
    assert "".join(chunks) == "".join(_psycopg(r) for r in rows)
    assert list(RowRenderer(None, "utf-8").lines(["bigint"], [])) == []


@pytest.mark.parametrize(("dest_type", "value"), CASES)
def test_rows_read_from_a_dict_render_the_same(dest_type: str, value: Any) -> None:
    renderer = RowRenderer(None, "utf-8")
    types = [dest_type, "bigint", "bigint"]
    line = renderer.render_dict(types, ['it\'s "odd"'])({'it\'s "odd"': value}, 5, None)
    assert line == renderer.render(types)((value, 5, None)) == _psycopg((value, 5, None))


def test_a_dict_row_missing_columns_renders_them_as_null() -> None:
    render = RowRenderer(None, "utf-8").render_dict(["bigint", "text", "bigint"], ["id", "x"])
    assert render({"id": 1}, 7) == "1\t\\N\t7\n"
    assert RowRenderer(None, "utf-8").render_dict([], [])({}) == "\n"
