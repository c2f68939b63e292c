"""DBLog window reconciliation and watermark parsing (pure logic)."""

from __future__ import annotations

from typing import Any

from tideflow.engine.snapshot import watermark
from tideflow.engine.snapshot.window import Window
from tideflow.events import UNCHANGED, ChangeEvent, Column, Message, Op, TableSchema

T = TableSchema(
    "public", "t", (Column("id", "int4", "int", False, True), Column("v", "text", "text")), ("id",)
)


def ev(op: Op, before: dict[str, Any] | None, after: dict[str, Any] | None) -> ChangeEvent:
    return ChangeEvent(op, T, before, after, {"lsn": 1}, 0)


def chunk() -> list[dict[str, Any]]:
    return [{"id": i, "v": f"old{i}", "big": "x" * 3} for i in range(1, 6)]


def test_unchanged_window_emits_every_row() -> None:
    assert Window("public.t", ("id",)).survivors(chunk()) == chunk()


def test_deleted_keys_are_dropped_and_updated_keys_take_the_streamed_values() -> None:
    w = Window("public.t", ("id",))
    w.note(ev(Op.DELETE, {"id": 2}, None))
    w.note(ev(Op.UPDATE, {"id": 3}, {"id": 3, "v": "new3", "big": UNCHANGED}))
    w.note(ev(Op.CREATE, None, {"id": 9, "v": "ins", "big": "y"}))  # not in the chunk
    out = {r["id"]: r for r in w.survivors(chunk())}
    assert sorted(out) == [1, 3, 4, 5]
    # The partial (TOAST-unchanged) update keeps the chunk's value of the untouched column.
    assert out[3] == {"id": 3, "v": "new3", "big": "xxx"}


def test_delete_then_reinsert_keeps_the_new_row() -> None:
    w = Window("public.t", ("id",))
    w.note(ev(Op.DELETE, {"id": 4}, None))
    w.note(ev(Op.CREATE, None, {"id": 4, "v": "again", "big": "z"}))
    out = {r["id"]: r for r in w.survivors(chunk())}
    assert out[4] == {"id": 4, "v": "again", "big": "z"}


def test_key_change_removes_the_old_key() -> None:
    w = Window("public.t", ("id",))
    w.note(ev(Op.UPDATE, {"id": 1}, {"id": 10, "v": "moved", "big": "q"}))
    assert [r["id"] for r in w.survivors(chunk())] == [2, 3, 4, 5]


def test_truncate_inside_the_window_drops_the_chunk() -> None:
    w = Window("public.t", ("id",))
    w.note(ChangeEvent(Op.TRUNCATE, T, None, None, {"lsn": 1}, 0))
    assert w.survivors(chunk()) == []


def test_watermarks_round_trip_and_ignore_foreign_messages() -> None:
    body = watermark.encode(watermark.Watermark("run:task:3", "high")).encode()
    assert watermark.decode(Message(watermark.PREFIX, body, {"lsn": 5})) == watermark.Watermark(
        "run:task:3", "high"
    )
    assert watermark.decode(Message("other", body, {"lsn": 5})) is None
    assert watermark.decode(Message(watermark.PREFIX, b"not json", {"lsn": 5})) is None
    assert watermark.decode(Message(watermark.PREFIX, b'{"id": 1, "kind": "low"}', {})) is None
