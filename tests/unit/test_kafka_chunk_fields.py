"""The Kafka chunk renderer works from a chunk's neutral field description alone
(``SnapshotChunk.fields``, :mod:`tideflow.copytext`): a chunk built here, by no source, renders
byte for byte as its events; a chunk without a description goes as events; and the Postgres
source describes its converters as the description promises."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from tideflow.connectors.destinations.kafka import chunks
from tideflow.connectors.destinations.kafka.serializer import Serializer
from tideflow.connectors.sources.postgres import copy_lines
from tideflow.connectors.sources.postgres.types import SCALARS, TIMESTAMPTZ, parse_of
from tideflow.copytext import Field, field_text, unescape
from tideflow.envelope import SourceInfo
from tideflow.events import Column, SnapshotChunk, TableSchema


def _utc(text: str) -> datetime | str:
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        return text


FIELDS = (
    Field("id", "int", int),
    Field("name", "text"),
    Field("amount", "decimal", Decimal),
    Field("at", "timestamptz", _utc),
    Field("ratio", "other", float),
    Field("flag", "other", lambda t: t == "t"),
)
T = TableSchema(
    "public",
    "t",
    (
        Column("id", "int8", "int", False, True),
        Column("name", "text", "text"),
        Column("amount", "numeric", "decimal"),
        Column("at", "timestamptz", "timestamptz"),
        Column("ratio", "float8", "float"),
        Column("flag", "bool", "bool"),
    ),
    ("id",),
)
# Each list is the lines of one chunk: the fast paths' cases, then values they must refuse.
LINES = {
    "plain": [
        b"1\tone\t1.25\t2024-01-01 00:00:00+00\t0.5\tt",
        b"2\ttwo\t-3\t2024-01-01 00:00:00.123456+00\t1e+300\tf",
    ],
    "edges": [
        b'3\tquote " and back\\\\slash\t0.0000001\t2024-01-01 00:00:00.5+00\tNaN\t\\N',
        b"4\ttab\\there\\nnewline\t\\N\tinfinity\t\\N\tt",
        b"5\t\\N\tNaN\t\\N\t-Infinity\tf",
    ],
}


def _decode(line: bytes) -> dict[str, Any]:
    """A line's row by the description's contract (what any source's ``decode`` must give)."""
    row: dict[str, Any] = {}
    for f, raw in zip(FIELDS, line.split(b"\t"), strict=True):
        text = field_text(raw)
        row[f.name] = text if text is None or f.convert is None else f.convert(text)
    return row


def _chunk(lines: list[bytes], fields: tuple[Field, ...] | None = FIELDS) -> SnapshotChunk:
    data = b"".join(line + b"\n" for line in lines)
    key = lambda line: (_decode(line)["id"],)  # noqa: E731
    columns = tuple(f.name for f in FIELDS)
    return SnapshotChunk(T, columns, data, len(lines), _decode, key, 7, fields=fields)


@pytest.mark.parametrize("schemas", [False, True], ids=["plain", "schemas"])
@pytest.mark.parametrize("lines", LINES.values(), ids=LINES.keys())
def test_a_described_chunk_renders_as_its_events(schemas: bool, lines: list[bytes]) -> None:
    serializer = Serializer(schemas=schemas, name="p", source=SourceInfo("postgresql", "s", "d"))
    chunk = _chunk(lines)
    rendered = chunks.render(serializer, chunk, "s.public.t", 9)
    assert rendered is not None
    events = chunk.events()
    assert rendered[0] == [serializer.key(e, "s.public.t") for e in events]
    assert rendered[1] == [serializer.value(e, "s.public.t", 9) for e in events]


def test_a_chunk_without_a_matching_description_goes_as_events() -> None:
    serializer = Serializer(schemas=False, name="p")
    assert chunks.render(serializer, _chunk(LINES["plain"], None), "t", 9) is None
    other_order = _chunk(LINES["plain"], FIELDS[::-1])
    assert chunks.render(serializer, other_order, "t", 9) is None


def test_postgres_describes_its_converters() -> None:
    assert parse_of(None) == "text"
    assert parse_of(int) == "int"
    assert parse_of(Decimal) == "decimal"
    assert parse_of(TIMESTAMPTZ) == "timestamptz"
    assert parse_of(SCALARS[16][2]) == "other"  # bool
    layout = copy_lines.Layout(("id", "n", "at", "s"), (int, Decimal, TIMESTAMPTZ, None), 1, True)
    assert layout.fields == (
        Field("id", "int", int),
        Field("n", "decimal", Decimal),
        Field("at", "timestamptz", TIMESTAMPTZ),
        Field("s", "text", None),
    )
    line = b"1\t2.5\t2024-01-01 00:00:00+00\ta\\tb"
    described = {}
    for f, raw in zip(layout.fields, line.split(b"\t"), strict=True):
        text = unescape(raw.decode())
        described[f.name] = f.convert(text) if f.convert is not None else text
    assert layout.decode(line) == described


def test_chunk_copies_keep_the_description() -> None:
    chunk = _chunk(LINES["plain"])
    assert dataclasses.replace(chunk, data=b"", rows=0).fields == FIELDS
