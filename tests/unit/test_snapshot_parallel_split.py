"""Cutting a snapshot chunk into parts for parallel destination writers (text and binary)."""

from __future__ import annotations

import itertools

import pytest

from tideflow.events import SnapshotChunk, TableSchema

_TABLE = TableSchema("public", "t", (), ("id",))


def _text(n: int) -> SnapshotChunk:
    data = b"".join(b"%d\tvalue %d\n" % (i, i * 7919) for i in range(n))
    return SnapshotChunk(_TABLE, ("id", "v"), data, n, dict, tuple)


def _binary(n: int) -> SnapshotChunk:
    rows = [b"\x00\x01\x00\x00\x00\x08" + i.to_bytes(8, "big") + b"x" * (i % 7) for i in range(n)]
    ends = list(itertools.accumulate(map(len, rows)))
    return SnapshotChunk(_TABLE, ("id",), b"".join(rows), n, dict, tuple, ends=ends)


@pytest.mark.parametrize("make", [_text, _binary], ids=["text", "binary"])
@pytest.mark.parametrize(
    ("rows", "parts"),
    [(10_000, 2), (10_001, 3), (5, 4), (1, 2), (3, 3)],
    ids=["even", "odd-three", "few-lines", "one-line", "line-each"],
)
def test_parts_are_whole_rows_in_order_covering_the_chunk(make, rows: int, parts: int) -> None:  # type: ignore[no-untyped-def]
    chunk = make(rows)
    got = chunk.parts(parts)
    assert b"".join(got) == chunk.data
    assert 1 <= len(got) <= parts
    newline = 0 if chunk.binary else 1  # lines() drops the newlines
    whole = set(itertools.accumulate(len(x) + newline for x in chunk.lines()))
    assert all(
        p and end in whole for p, end in zip(got, itertools.accumulate(map(len, got)), strict=True)
    )
    if rows >= 100 * parts:
        sizes = [len(p) for p in got]
        assert len(got) == parts
        assert max(sizes) - min(sizes) <= 2 * max(len(x) + 1 for x in chunk.lines())


@pytest.mark.parametrize("make", [_text, _binary], ids=["text", "binary"])
def test_one_part_is_the_chunk(make) -> None:  # type: ignore[no-untyped-def]
    chunk = make(50)
    assert chunk.parts(1) == [chunk.data]


@pytest.mark.parametrize("make", [_text, _binary], ids=["text", "binary"])
def test_keeping_some_rows_keeps_their_framing(make) -> None:  # type: ignore[no-untyped-def]
    chunk = make(20)
    lines = chunk.lines()
    kept = chunk.keeping(lines[3:9] + lines[15:16])
    assert kept.rows == 7
    assert kept.lines() == lines[3:9] + lines[15:16]
    assert chunk.keeping([]).rows == 0
