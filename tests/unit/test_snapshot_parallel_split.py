"""Cutting a snapshot chunk's COPY text into parts for parallel destination writers."""

from __future__ import annotations

import pytest

from tideflow.connectors.destinations.postgres.writers import split


def _lines(n: int) -> bytes:
    return b"".join(b"%d\tvalue %d\n" % (i, i * 7919) for i in range(n))


@pytest.mark.parametrize(
    ("rows", "parts"),
    [(10_000, 2), (10_001, 3), (5, 4), (1, 2), (3, 3)],
    ids=["even", "odd-three", "few-lines", "one-line", "line-each"],
)
def test_parts_are_whole_lines_in_order_covering_the_chunk(rows: int, parts: int) -> None:
    data = _lines(rows)
    got = split(data, parts)
    assert b"".join(got) == data
    assert 1 <= len(got) <= parts
    assert all(p and p.endswith(b"\n") for p in got)
    if rows >= 100 * parts:
        sizes = [len(p) for p in got]
        assert len(got) == parts
        assert max(sizes) - min(sizes) <= 2 * max(len(x) for x in data.split(b"\n"))


def test_one_part_is_the_chunk() -> None:
    data = _lines(50)
    assert split(data, 1) == [data]
