"""pgoutput message decoding of the postgresql source (pure: messages built by hand)."""

from __future__ import annotations

import logging
import struct
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from tideflow.connectors.sources.postgres.decoder import (
    PG_EPOCH_MS,
    PgOutputDecoder,
    TableFacts,
)
from tideflow.connectors.sources.postgres.types import TypeMap
from tideflow.errors import TerminalError
from tideflow.events import UNCHANGED, ChangeEvent, Commit, Message, Op, Record

TS_US = 789_000_000_000_000  # µs since 2000-01-01
TS_MS = TS_US // 1000 + PG_EPOCH_MS
Value = bytes | None | object


def cstr(s: str) -> bytes:
    return s.encode() + b"\0"


def begin(xid: int = 700, final_lsn: int = 1000) -> bytes:
    return b"B" + struct.pack(">QqI", final_lsn, TS_US, xid)


def commit(end_lsn: int, commit_lsn: int = 0) -> bytes:
    return b"C" + struct.pack(">BQQq", 0, commit_lsn or end_lsn - 8, end_lsn, TS_US)


def relation(
    relid: int,
    table: str,
    columns: list[tuple[str, int, int, bool]],  # name, oid, typmod, identity
    identity: str = "d",
    schema: str = "public",
) -> bytes:
    out = b"R" + struct.pack(">I", relid) + cstr(schema) + cstr(table) + identity.encode()
    out += struct.pack(">H", len(columns))
    for name, oid, typmod, ident in columns:
        out += struct.pack(">B", 1 if ident else 0) + cstr(name) + struct.pack(">Ii", oid, typmod)
    return out


def tup(values: list[Value]) -> bytes:
    out = struct.pack(">H", len(values))
    for v in values:
        if v is None:
            out += b"n"
        elif v is UNCHANGED:
            out += b"u"
        else:
            assert isinstance(v, bytes)
            out += b"t" + struct.pack(">i", len(v)) + v
    return out


def insert(relid: int, values: list[Value]) -> bytes:
    return b"I" + struct.pack(">I", relid) + b"N" + tup(values)


def update(
    relid: int, new: list[Value], old: list[Value] | None = None, kind: bytes = b"K"
) -> bytes:
    out = b"U" + struct.pack(">I", relid)
    if old is not None:
        out += kind + tup(old)
    return out + b"N" + tup(new)


def delete(relid: int, old: list[Value], kind: bytes = b"K") -> bytes:
    return b"D" + struct.pack(">I", relid) + kind + tup(old)


def truncate(*relids: int) -> bytes:
    return (
        b"T" + struct.pack(">IB", len(relids), 0) + b"".join(struct.pack(">I", r) for r in relids)
    )


def message(prefix: str, content: bytes, lsn: int, transactional: bool = True) -> bytes:
    return (
        b"M"
        + struct.pack(">BQ", 1 if transactional else 0, lsn)
        + cstr(prefix)
        + struct.pack(">I", len(content))
        + content
    )


ITEMS = [
    ("id", 23, -1, True),
    ("name", 25, -1, False),
    ("price", 1700, (12 << 16 | 2) + 4, False),
    ("doc", 25, -1, False),
]


def feed(decoder: PgOutputDecoder, *messages: bytes, lsn: int = 500) -> list[Record]:
    """Decode messages wrapped as XLogData (the decoder reads from offset 25)."""
    out: list[Record] = []
    for i, m in enumerate(messages):
        decoder.decode(b"w" + bytes(24) + m, 25, lsn + i, out)
    return out


def decoder(**kwargs: Any) -> PgOutputDecoder:
    return PgOutputDecoder(TypeMap(), **kwargs)


def test_insert_in_transaction() -> None:
    d = decoder()
    out = feed(
        d,
        begin(xid=42),
        relation(16400, "items", ITEMS),
        insert(16400, [b"1", b"caf\xc3\xa9", b"12.50", None]),
        commit(end_lsn=9000),
        lsn=100,
    )
    event, end = out
    assert isinstance(event, ChangeEvent) and isinstance(end, Commit)
    assert event.op is Op.CREATE
    assert event.before is None
    assert event.after == {"id": 1, "name": "café", "price": Decimal("12.50"), "doc": None}
    assert event.position == {"lsn": 102}
    assert (event.txid, event.commit_ts_ms) == (42, TS_MS)
    assert end == Commit({"lsn": 9000}, TS_MS, False)
    assert not d.in_transaction and d.last_commit_lsn == 9000
    schema = event.table
    assert schema.name == "public.items" and schema.key == ("id",)
    assert [(c.name, c.type, c.kind, c.key) for c in schema.columns] == [
        ("id", "int4", "int", True),
        ("name", "text", "text", False),
        ("price", "numeric(12,2)", "decimal", False),
        ("doc", "text", "text", False),
    ]


def test_update_with_unchanged_toast_and_key_only_old_tuple() -> None:
    d = decoder()
    out = feed(
        d,
        begin(),
        relation(1, "items", ITEMS),
        update(1, [b"2", b"n", b"1.00", UNCHANGED], old=[b"1", None, None, None]),
        update(1, [b"2", b"m", b"1.00", UNCHANGED]),
        commit(2000),
    )
    first, second = out[0], out[1]
    assert isinstance(first, ChangeEvent) and isinstance(second, ChangeEvent)
    assert first.op is Op.UPDATE
    assert first.before == {"id": 1}  # key change: only the identity columns are known
    assert first.after == {"id": 2, "name": "n", "price": Decimal("1.00"), "doc": UNCHANGED}
    assert first.after["doc"] is UNCHANGED
    assert second.before is None


def test_update_and_delete_with_replica_identity_full() -> None:
    d = decoder()
    cols = [("a", 23, -1, True), ("b", 25, -1, True)]  # FULL flags every column
    out = feed(
        d,
        begin(),
        relation(2, "keyless", cols, identity="f"),
        update(2, [b"1", b"y"], old=[b"1", b"x"], kind=b"O"),
        delete(2, [b"1", b"y"], kind=b"O"),
        commit(3000),
    )
    upd, dele = out[0], out[1]
    assert isinstance(upd, ChangeEvent) and isinstance(dele, ChangeEvent)
    assert upd.before == {"a": 1, "b": "x"} and upd.after == {"a": 1, "b": "y"}
    assert dele.op is Op.DELETE and dele.before == {"a": 1, "b": "y"} and dele.after is None
    assert upd.table.key == ()  # FULL without a primary key is not a key


def test_delete_key_only() -> None:
    d = decoder()
    out = feed(d, begin(), relation(1, "items", ITEMS), delete(1, [b"7", None, None, None]))
    event = out[0]
    assert isinstance(event, ChangeEvent)
    assert event.op is Op.DELETE and event.before == {"id": 7} and event.key() == (7,)


def test_truncate_emits_one_event_per_table() -> None:
    d = decoder()
    out = feed(
        d,
        begin(),
        relation(1, "items", ITEMS),
        relation(2, "other", [("x", 20, -1, True)]),
        truncate(1, 2),
        commit(4000),
    )
    truncs = [r for r in out if isinstance(r, ChangeEvent)]
    assert [(t.op, t.table.name, t.before, t.after) for t in truncs] == [
        (Op.TRUNCATE, "public.items", None, None),
        (Op.TRUNCATE, "public.other", None, None),
    ]


def test_logical_messages() -> None:
    d = decoder()
    out = feed(
        d,
        message("wm", b"\x00low", lsn=123, transactional=False),
        begin(),
        message("wm", b"high", lsn=456),
        commit(5000),
    )
    assert out == [
        Message("wm", b"\x00low", {"lsn": 123}, False),
        Message("wm", b"high", {"lsn": 456}, True),
        Commit({"lsn": 5000}, TS_MS, False),
    ]


def test_heartbeat_message_is_swallowed_and_marks_the_commit() -> None:
    d = decoder()
    out = feed(d, begin(), message("tideflow_heartbeat", b"", lsn=1), commit(6000))
    assert out == [Commit({"lsn": 6000}, TS_MS, True)]


def test_origin_and_type_messages_are_ignored() -> None:
    d = decoder()
    origin = b"O" + struct.pack(">Q", 10) + cstr("node1")
    typ = b"Y" + struct.pack(">I", 50000) + cstr("public") + cstr("mood")
    assert feed(d, begin(), origin, typ) == []


def test_primary_key_from_catalog_wins_over_identity_flags() -> None:
    cols = [("a", 23, -1, False), ("b", 23, -1, True), ("c", 25, -1, False)]
    facts = TableFacts(primary_key=("a", "b"), not_null=frozenset({"a", "b", "c"}))
    d = decoder(facts=lambda relid: facts)
    out = feed(d, begin(), relation(3, "t", cols, identity="i"), insert(3, [b"1", b"2", b"x"]))
    event = out[0]
    assert isinstance(event, ChangeEvent)
    assert event.table.key == ("a", "b")
    assert [c.nullable for c in event.table.columns] == [False, False, False]


def test_column_filter_keeps_keys() -> None:
    def keep(schema: str, table: str, column: str) -> bool:
        return column not in ("id", "doc")

    d = decoder(keep_column=keep)
    out = feed(d, begin(), relation(1, "items", ITEMS), insert(1, [b"1", b"n", b"2", b"big"]))
    event = out[0]
    assert isinstance(event, ChangeEvent)
    assert event.after == {"id": 1, "name": "n", "price": Decimal("2")}
    assert [c.name for c in event.table.columns] == ["id", "name", "price"]


def test_schema_version_grows_on_change_only() -> None:
    d = decoder()
    out = feed(
        d,
        begin(),
        relation(1, "items", ITEMS),
        insert(1, [b"1", b"a", b"1", b"x"]),
        relation(1, "items", ITEMS),
        insert(1, [b"2", b"a", b"1", b"x"]),
        relation(1, "items", [*ITEMS, ("extra", 16, -1, False)]),
        insert(1, [b"3", b"a", b"1", b"x", b"t"]),
    )
    versions = [r.table.version for r in out if isinstance(r, ChangeEvent)]
    assert versions == [1, 1, 2]
    last = out[-1]
    assert isinstance(last, ChangeEvent) and last.after is not None and last.after["extra"] is True


def test_column_count_mismatch_is_terminal() -> None:
    d = decoder()
    feed(d, begin(), relation(1, "items", ITEMS))
    with pytest.raises(TerminalError, match="expected 4 columns, got 2"):
        feed(d, insert(1, [b"1", b"2"]))


def test_change_before_relation_is_terminal() -> None:
    with pytest.raises(TerminalError, match="relation 77"):
        feed(decoder(), begin(), insert(77, [b"1"]))


def test_keyless_table_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    d = decoder()
    cols = [("a", 23, -1, False)]
    with caplog.at_level(logging.WARNING):
        feed(d, relation(9, "logs", cols), relation(9, "logs", cols), insert(9, [b"1"]))
    warnings = [r.getMessage() for r in caplog.records if "public.logs" in r.getMessage()]
    assert len(warnings) == 1
    assert "REPLICA IDENTITY FULL" in warnings[0]


def test_quoted_and_odd_column_names() -> None:
    cols = [("Id", 23, -1, True), ('we\'ird "name"', 25, -1, False)]
    d = decoder()
    out = feed(
        d, begin(), relation(1, "MixedCase", cols, schema="My Schema"), insert(1, [b"1", b"v"])
    )
    event = out[0]
    assert isinstance(event, ChangeEvent)
    assert event.table.name == "My Schema.MixedCase"
    assert event.after == {"Id": 1, 'we\'ird "name"': "v"}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (b"2024-01-02 03:04:05.123456+00", datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)),
        (b"2024-01-02 03:04:05+02", datetime(2024, 1, 2, 1, 4, 5, tzinfo=UTC)),
        (b"2024-01-02 03:04:05", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
        (b"infinity", "infinity"),
        (b"0044-03-15 12:00:00+00 BC", "0044-03-15 12:00:00+00 BC"),
        (None, None),
    ],
    ids=["utc", "offset", "no-offset", "infinity", "bc", "null"],
)
def test_timestamptz_values_in_a_tuple(text: bytes | None, value: Any) -> None:
    columns = [("id", 23, -1, True), ("at", 1184, -1, False), ("n", 23, -1, False)]
    (event,) = feed(decoder(), relation(1, "t", columns), insert(1, [b"1", text, b"2"]))
    assert isinstance(event, ChangeEvent) and event.after == {"id": 1, "at": value, "n": 2}
    at = event.after["at"]
    assert not isinstance(at, datetime) or at.tzinfo is UTC
