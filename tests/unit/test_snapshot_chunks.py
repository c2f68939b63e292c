"""DBLog reconciliation of chunks carried as COPY text, and COPY line decoding (pure logic)."""

from __future__ import annotations

from typing import Any

from tideflow.connectors.sources.postgres.copy_lines import Layout
from tideflow.copytext import unescape
from tideflow.engine.snapshot import chunks
from tideflow.engine.snapshot.window import Window
from tideflow.events import UNCHANGED, ChangeEvent, Column, Op, SnapshotChunk, TableSchema

T = TableSchema(
    "public",
    "t",
    (
        Column("id", "int4", "int", False, True),
        Column("v", "text", "text"),
        Column("big", "text", "text"),
    ),
    ("id",),
)
LAYOUT = Layout(("id", "v", "big"), (int, None, None), 1, True)


def chunk() -> SnapshotChunk:
    data = b"".join(b"%d\told%d\txxx\n" % (i, i) for i in range(1, 6))
    return SnapshotChunk(T, LAYOUT.columns, data, 5, LAYOUT.decode, LAYOUT.key, 42)


def ev(op: Op, before: dict[str, Any] | None, after: dict[str, Any] | None) -> ChangeEvent:
    return ChangeEvent(op, T, before, after, {"lsn": 1}, 0)


def test_unchanged_window_keeps_the_chunk_as_read() -> None:
    c = chunk()
    assert chunks.survivors(c, Window("public.t", ("id",))) == [c]


def test_changed_keys_leave_the_chunk_deleted_keys_are_dropped() -> None:
    w = Window("public.t", ("id",))
    w.note(ev(Op.DELETE, {"id": 2}, None))
    w.note(ev(Op.UPDATE, {"id": 3}, {"id": 3, "v": "new3", "big": UNCHANGED}))
    w.note(ev(Op.CREATE, None, {"id": 9, "v": "ins", "big": "y"}))  # not in the chunk
    out = chunks.survivors(chunk(), w)
    rest, merged = out
    assert isinstance(rest, SnapshotChunk) and isinstance(merged, ChangeEvent)
    assert rest.rows == 3
    assert [r["id"] for r in (e.after for e in rest.events()) if r] == [1, 4, 5]
    assert rest.data == b"1\told1\txxx\n4\told4\txxx\n5\told5\txxx\n"
    # The partial (TOAST-unchanged) update keeps the chunk's value of the untouched column.
    assert merged.op is Op.READ and merged.snapshot
    assert merged.after == {"id": 3, "v": "new3", "big": "xxx"}
    # The same rows as the row-by-row reconciliation gives.
    rows = [e.after for e in rest.events()] + [merged.after]
    expected = w.survivors([LAYOUT.decode(x) for x in chunk().lines()])
    assert sorted(rows, key=lambda r: r["id"] if r else 0) == expected


def test_truncate_inside_the_window_drops_the_chunk() -> None:
    w = Window("public.t", ("id",))
    w.note(ChangeEvent(Op.TRUNCATE, T, None, None, {"lsn": 1}, 0))
    assert chunks.survivors(chunk(), w) == []


def test_every_key_changed_leaves_no_chunk() -> None:
    w = Window("public.t", ("id",))
    for i in range(1, 6):
        w.note(ev(Op.DELETE, {"id": i}, None))
    assert chunks.survivors(chunk(), w) == []


def test_copy_text_fields_are_unescaped_and_nulls_read_as_none() -> None:
    layout = Layout(("k", "a", "b"), (None, None, int), 1, True)
    row = layout.decode(b"x\\ty\ttab\\there\\\\ and\\nline\t\\N")
    assert row == {"k": "x\ty", "a": "tab\there\\ and\nline", "b": None}
    assert layout.key(b"x\\ty\ta\t1") == ("x\ty",)
    assert layout.key_text(b"x\\ty\ta\t1") == ("x\ty",)
    assert unescape("\\b\\f\\r\\v") == "\b\f\r\v"
