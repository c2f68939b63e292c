"""Per-key reduction of a batch, including UNCHANGED merging (engine/reduce.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tideflow.engine.reduce import TableChanges, merge_unchanged, reduce
from tideflow.events import UNCHANGED, ChangeEvent, Column, Op, TableSchema

T = TableSchema(
    "public",
    "t",
    (
        Column("id", "int4", "int", False, True),
        Column("a", "text", "text"),
        Column("big", "text", "text"),
    ),
    ("id",),
)
KEYLESS = TableSchema("public", "log", (Column("x", "int4", "int"),), ())


def ev(
    op: Op,
    after: dict[str, Any] | None = None,
    before: dict[str, Any] | None = None,
    lsn: int = 1,
    table: TableSchema = T,
) -> ChangeEvent:
    return ChangeEvent(op, table, before, after, {"lsn": lsn}, 1000)


def by_table(events: list[ChangeEvent]) -> dict[str, TableChanges]:
    return {tc.table.name: tc for tc in reduce(events, lambda t: t.key)}


def state(tc: TableChanges) -> dict[Any, tuple[str, dict[str, Any], frozenset[str]]]:
    return {k: (c.kind, c.row, c.unchanged) for k, c in tc.changes.items()}


def test_last_change_per_key_wins() -> None:
    e1 = ev(Op.CREATE, {"id": 1, "a": "x", "big": "B"}, lsn=1)
    e2 = ev(Op.UPDATE, {"id": 1, "a": "y", "big": "B"}, lsn=2)
    e3 = ev(Op.CREATE, {"id": 2, "a": "z", "big": "C"}, lsn=3)
    tc = by_table([e1, e2, e3])["public.t"]
    assert state(tc) == {
        1: ("upsert", {"id": 1, "a": "y", "big": "B"}, frozenset()),
        2: ("upsert", {"id": 2, "a": "z", "big": "C"}, frozenset()),
    }
    assert tc.changes[1].events == [e1, e2]
    assert tc.changes[1].event is e2


def test_delete_then_insert_is_an_upsert_and_insert_then_delete_a_delete() -> None:
    tc = by_table(
        [
            ev(Op.DELETE, before={"id": 1}, lsn=1),
            ev(Op.CREATE, {"id": 1, "a": "new", "big": "N"}, lsn=2),
            ev(Op.CREATE, {"id": 2, "a": "tmp", "big": "T"}, lsn=3),
            ev(Op.DELETE, before={"id": 2}, lsn=4),
        ]
    )["public.t"]
    assert state(tc) == {
        1: ("upsert", {"id": 1, "a": "new", "big": "N"}, frozenset()),
        2: ("delete", {"id": 2}, frozenset()),
    }


def test_unchanged_is_filled_from_an_earlier_change_in_the_batch() -> None:
    tc = by_table(
        [
            ev(Op.CREATE, {"id": 1, "a": "x", "big": "BIG"}, lsn=1),
            ev(Op.UPDATE, {"id": 1, "a": "y", "big": UNCHANGED}, lsn=2),
        ]
    )["public.t"]
    assert state(tc) == {1: ("upsert", {"id": 1, "a": "y", "big": "BIG"}, frozenset())}


def test_unchanged_is_filled_from_the_before_image() -> None:
    tc = by_table(
        [
            ev(
                Op.UPDATE,
                {"id": 1, "a": "y", "big": UNCHANGED},
                before={"id": 1, "a": "x", "big": "OLD"},
                lsn=2,
            ),
        ]
    )["public.t"]
    assert state(tc) == {1: ("upsert", {"id": 1, "a": "y", "big": "OLD"}, frozenset())}


def test_unknown_unchanged_values_stay_marked_never_invented() -> None:
    tc = by_table(
        [
            ev(Op.UPDATE, {"id": 1, "a": "y", "big": UNCHANGED}, lsn=2),
            ev(Op.UPDATE, {"id": 1, "a": "z", "big": UNCHANGED}, lsn=3),
        ]
    )["public.t"]
    change = tc.changes[1]
    assert change.row == {"id": 1, "a": "z", "big": UNCHANGED}
    assert change.unchanged == frozenset({"big"})
    assert len(change.events) == 2


def test_a_null_is_a_known_value() -> None:
    tc = by_table(
        [
            ev(Op.CREATE, {"id": 1, "a": "x", "big": None}, lsn=1),
            ev(Op.UPDATE, {"id": 1, "a": "y", "big": UNCHANGED}, lsn=2),
        ]
    )["public.t"]
    assert state(tc)[1] == ("upsert", {"id": 1, "a": "y", "big": None}, frozenset())


def test_key_change_deletes_the_old_key_and_carries_values() -> None:
    tc = by_table(
        [
            ev(Op.CREATE, {"id": 1, "a": "x", "big": "BIG"}, lsn=1),
            ev(Op.UPDATE, {"id": 5, "a": "x", "big": UNCHANGED}, before={"id": 1}, lsn=2),
        ]
    )["public.t"]
    assert state(tc) == {
        1: ("delete", {"id": 1}, frozenset()),
        5: ("upsert", {"id": 5, "a": "x", "big": "BIG"}, frozenset()),
    }


def test_truncate_discards_earlier_changes_and_is_applied_first() -> None:
    t_ev = ev(Op.TRUNCATE, lsn=2)
    tc = by_table(
        [
            ev(Op.CREATE, {"id": 1, "a": "x", "big": "B"}, lsn=1),
            t_ev,
            ev(Op.CREATE, {"id": 2, "a": "y", "big": "C"}, lsn=3),
        ]
    )["public.t"]
    assert tc.truncate is t_ev
    assert list(tc.changes) == [2]


def test_keyless_tables_keep_every_event_in_order() -> None:
    events = [
        ev(Op.CREATE, {"x": 1}, lsn=1, table=KEYLESS),
        ev(Op.CREATE, {"x": 1}, lsn=2, table=KEYLESS),
    ]
    tc = by_table(events)["public.log"]
    assert tc.log == events and not tc.changes


def test_array_keys_are_hashable() -> None:
    t = TableSchema("public", "a", (Column("k", "int4[]", "array", False, True),), ("k",))
    tc = by_table([ev(Op.CREATE, {"k": [1, 2]}, table=t), ev(Op.CREATE, {"k": [1, 2]}, table=t)])
    assert list(tc["public.a"].changes) == [(1, 2)]


def test_newer_schema_version_wins_for_the_table() -> None:
    t2 = TableSchema("public", "t", (*T.columns, Column("extra", "int4", "int")), ("id",), 2)
    tc = by_table(
        [
            ev(Op.CREATE, {"id": 1, "a": "x", "big": "B"}),
            ev(Op.CREATE, {"id": 2, "a": "x", "big": "B", "extra": 7}, table=t2),
        ]
    )
    assert tc["public.t"].table is t2


def test_merge_unchanged_returns_the_same_dict_when_nothing_is_unchanged() -> None:
    row = {"id": 1}
    assert merge_unchanged(row, None, None) is row


def _general(events: list[ChangeEvent]) -> list[TableChanges]:
    """The per-event path (the whole-batch insert path only takes lists)."""
    return reduce(iter(events), lambda t: t.key)


@pytest.mark.parametrize(
    "keys",
    [[1, 2, 3], [1, 2, 1], [1, None, 3], [[1, 2], [3]], ["a", "b"]],
    ids=["distinct", "repeated", "null-key", "array-keys", "text-keys"],
)
def test_a_batch_of_creates_reduces_as_event_by_event(keys: list[Any]) -> None:
    events = [ev(Op.CREATE, {"id": k, "a": str(i), "big": "B"}, lsn=i) for i, k in enumerate(keys)]
    (fast,) = reduce(events, lambda t: t.key)
    (slow,) = _general(events)
    assert state(fast) == state(slow) and list(fast.changes) == list(slow.changes)
    assert all(
        f.event is s.event and f.events == s.events
        for f, s in zip(fast.changes.values(), slow.changes.values(), strict=True)
    )
    assert (fast.table, fast.key, fast.truncate, fast.log) == (T, ("id",), None, [])


def test_creates_of_two_tables_or_with_an_update_take_the_general_path() -> None:
    other = TableSchema("public", "u", T.columns, ("id",))
    mixed = [ev(Op.CREATE, {"id": 1, "a": "x", "big": "B"}), ev(Op.CREATE, {"id": 1}, table=other)]
    assert {tc.table.name: state(tc) for tc in reduce(mixed, lambda t: t.key)} == {
        tc.table.name: state(tc) for tc in _general(mixed)
    }
    updated = [ev(Op.CREATE, {"id": 1, "a": "x", "big": "B"}), ev(Op.UPDATE, {"id": 1, "a": "y"})]
    assert state(reduce(updated, lambda t: t.key)[0]) == state(_general(updated)[0])
