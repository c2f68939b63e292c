"""Per-key reduction of a batch: the net change of each key, in order (invariant 3).

A keyed destination (upsert by primary key) only needs the last change of each key in a batch,
so it can write one row per key with set-based statements. Rules, per table:

- a TRUNCATE discards every earlier change of that table in the batch and is applied first;
- create/read/update → ``upsert`` of the after image; delete → ``delete`` of the key;
- an update that changes the key is a delete of the old key then an upsert of the new one;
- an :data:`~tideflow.events.UNCHANGED` value in an after image is filled from an earlier change
  of the same key in the batch, else from the event's own before image; what stays UNCHANGED
  is listed in :attr:`Change.unchanged` and must be left as it is by the writer (never written
  as a placeholder).

Tables whose key is empty (no primary key, or an append-only writer) are not reduced: their
events stay in order in :attr:`TableChanges.log`.

This runs for every event, so it favours speed: one dict lookup per event and no copies unless
a value is UNCHANGED.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from functools import partial
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any, Literal, NamedTuple
from uuid import UUID

from tideflow.events import UNCHANGED, ChangeEvent, Op, TableSchema

_NO_UNCHANGED: frozenset[str] = frozenset()
_UNCHANGED_ID = id(UNCHANGED)
_CREATE = Op.CREATE
_TABLE, _OP, _AFTER = attrgetter("table"), attrgetter("op"), attrgetter("after")
# Key value types that hash and compare as themselves (no list → tuple, no NULL/UNCHANGED).
_PLAIN_KEYS = frozenset({int, str, bytes, Decimal, float, bool, date, datetime, time, UUID})


def has_unchanged(row: dict[str, Any]) -> bool:
    """True when a value of ``row`` is UNCHANGED.

    Compares identities: ``UNCHANGED in row.values()`` would call every value's ``__eq__``,
    which is slow for Decimal (an ABC check per value) and runs once per event.
    """
    return _UNCHANGED_ID in map(id, row.values())


class Change(NamedTuple):
    """The net effect of a batch on one key.

    A named tuple, so that a batch of creates can make its changes with ``tuple.__new__``
    in C (see :func:`_distinct_inserts`); a ``Change`` is never modified, only replaced.
    """

    kind: Literal["upsert", "delete"]
    # upsert: the after image; delete: the before image (or whatever identifies the row).
    row: dict[str, Any]
    event: ChangeEvent  # the last event of the key (metadata: position, commit time)
    events: list[ChangeEvent]  # every event folded in (what a dead letter must carry)
    unchanged: frozenset[str] = _NO_UNCHANGED  # upsert columns whose value is not known


def _key_getter(names: tuple[str, ...]) -> Callable[[dict[str, Any]], Any]:
    """A function returning the hashable key of a row, or None if a key value is unknown."""
    if len(names) == 1:
        name = names[0]

        def one(row: dict[str, Any]) -> Any:
            value = row.get(name, UNCHANGED)
            if value is UNCHANGED:
                return None
            return tuple(value) if value.__class__ is list else value

        return one

    def many(row: dict[str, Any]) -> Any:
        values = tuple(row.get(n, UNCHANGED) for n in names)
        for v in values:
            if v is UNCHANGED:
                return None
            if v.__class__ is list:
                return tuple(tuple(x) if x.__class__ is list else x for x in values)
        return values

    return many


@dataclass(slots=True)
class TableChanges:
    table: TableSchema  # the newest schema seen for the table in the batch
    key: tuple[str, ...]
    truncate: ChangeEvent | None = None
    changes: dict[Any, Change] = field(default_factory=dict)
    log: list[ChangeEvent] = field(default_factory=list)
    key_of_row: Callable[[dict[str, Any]], Any] = field(init=False)

    def __post_init__(self) -> None:
        self.key_of_row = _key_getter(self.key)


def merge_unchanged(
    after: dict[str, Any], earlier: dict[str, Any] | None, before: dict[str, Any] | None
) -> dict[str, Any]:
    """``after`` with UNCHANGED values filled from ``earlier``, then from ``before``."""
    if not has_unchanged(after):
        return after
    out = dict(after)
    for name, value in after.items():
        if value is not UNCHANGED:
            continue
        for source in (earlier, before):
            if source is not None:
                known = source.get(name, UNCHANGED)
                if known is not UNCHANGED:
                    out[name] = known
                    break
    return out


def reduce(
    events: Iterable[ChangeEvent], key_of: Callable[[TableSchema], tuple[str, ...]]
) -> list[TableChanges]:
    """Reduce ``events`` (in stream order) to per-table, per-key net changes."""
    if isinstance(events, list):
        inserts = _distinct_inserts(events, key_of)
        if inserts is not None:
            return [inserts]
    tables: dict[str, TableChanges] = {}
    # TableSchema identity → its TableChanges: hashing a schema would walk its columns.
    seen: dict[int, tuple[TableSchema, TableChanges]] = {}
    create = Op.CREATE
    for ev in events:
        table = ev.table
        hit = seen.get(id(table))
        if hit is None or hit[0] is not table:
            tc = tables.get(table.name)
            if tc is None:
                tc = tables[table.name] = TableChanges(table, key_of(table))
            elif table.version >= tc.table.version:
                tc.table = table
                if key_of(table) != tc.key:
                    tc.key = key_of(table)
                    tc.key_of_row = _key_getter(tc.key)
            hit = seen[id(table)] = (table, tc)
        tc = hit[1]
        op = ev.op
        if op is create and tc.key and ev.after is not None:
            # Fast path for the common insert-only stream: a create of a key not yet in the
            # batch is complete (no UNCHANGED values) and has no history, so it becomes its
            # Change directly, without _upsert's merge and history bookkeeping.
            after = ev.after
            key = tc.key_of_row(after)
            if key is not None and key not in tc.changes:
                tc.changes[key] = Change("upsert", after, ev, [ev])
                continue
        if op is Op.TRUNCATE:
            tc.truncate = ev
            tc.changes.clear()
            tc.log.clear()
        elif not tc.key:
            tc.log.append(ev)
        elif ev.op is Op.DELETE:
            _delete(tc, ev)
        else:
            _upsert(tc, ev)
    return list(tables.values())


def _distinct_inserts(
    events: list[ChangeEvent], key_of: Callable[[TableSchema], tuple[str, ...]]
) -> TableChanges | None:
    """The reduction of a batch of creates of one table with distinct single-column keys
    (an insert-only stream), or None when the batch is anything else.

    Each create becomes its own ``Change``, exactly as the per-event fast path of
    :func:`reduce` would make it, but the tests and the key extraction run over the whole
    batch in C (``map``, ``list.count`` by identity, ``set``) instead of per event in Python.
    """
    if not events:
        return None
    table = events[0].table
    n = len(events)
    if list(map(_TABLE, events)).count(table) != n or list(map(_OP, events)).count(_CREATE) != n:
        return None
    key = key_of(table)
    if len(key) != 1:
        return None
    afters = list(map(_AFTER, events))
    if None in afters:
        return None
    try:
        keys = list(map(itemgetter(key[0]), afters))
    except KeyError:
        return None
    # A NULL, unknown or list key takes the general path (skipped, or made a tuple there).
    if not _PLAIN_KEYS.issuperset(map(type, keys)) or len(set(keys)) != n:
        return None
    tc = TableChanges(table, key)
    one = map(list, zip(events))  # [event] per event, made in C
    fields = zip(repeat("upsert"), afters, events, one, repeat(_NO_UNCHANGED))
    tc.changes = dict(zip(keys, map(_new_change, fields), strict=True))
    return tc


_new_change: Callable[[tuple[Any, ...]], Change] = partial(tuple.__new__, Change)


def _delete(tc: TableChanges, ev: ChangeEvent) -> None:
    row = ev.before if ev.before is not None else ev.after
    if row is None:
        return
    key = tc.key_of_row(row)
    if key is None:
        return  # nothing identifies the row; sources refuse deletes without replica identity
    prev = tc.changes.get(key)
    if prev is None:
        tc.changes[key] = Change("delete", row, ev, [ev])
    else:
        prev.events.append(ev)
        tc.changes[key] = Change("delete", row, ev, prev.events)


def _upsert(tc: TableChanges, ev: ChangeEvent) -> None:
    after = ev.after
    if after is None:
        return
    changes = tc.changes
    key = tc.key_of_row(after)
    if key is None:
        return
    prev = changes.get(key)
    earlier = prev.row if prev is not None and prev.kind == "upsert" else None
    history = prev.events if prev is not None else []
    before = ev.before
    if ev.op is Op.UPDATE:
        if before is not None:
            old = tc.key_of_row(before)
            if old is not None and old != key:
                # The row moved to a new key: delete the old one; its earlier image is the row's.
                moved = changes.get(old)
                moved_events = moved.events if moved is not None else []
                changes[old] = Change("delete", before, ev, [*moved_events, ev])
                if earlier is None and moved is not None and moved.kind == "upsert":
                    earlier = moved.row
                history = [*moved_events, *history]
        # Only updates carry unchanged TOAST values; creates and snapshot reads are complete.
        if has_unchanged(after):
            after = merge_unchanged(after, earlier, before)
            unchanged = frozenset(k for k, v in after.items() if v is UNCHANGED)
            history.append(ev)
            changes[key] = Change("upsert", after, ev, history, unchanged)
            return
    if prev is None:
        changes[key] = Change("upsert", after, ev, [*history, ev])
    else:
        history.append(ev)
        changes[key] = Change("upsert", after, ev, history)
