"""The postgresql source against the real server: values, TOAST, big transactions, acks, resume,
idle slots, lost slots."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from datetime import time as dtime
from decimal import Decimal
from typing import Any

import psutil
import psycopg
import pytest

from tests.support import pg
from tideflow.connectors.sources.postgres import connection
from tideflow.connectors.sources.postgres.config import PostgresSourceConfig
from tideflow.connectors.sources.postgres.source import PostgresSource
from tideflow.errors import TerminalError, TransientError
from tideflow.events import UNCHANGED, ChangeEvent, Commit, Message, Op, Record

pytestmark = pytest.mark.integration


def make_config(db: str, tables: str = "public.t", **extra: Any) -> PostgresSourceConfig:
    tag = uuid.uuid4().hex[:8]
    return PostgresSourceConfig.model_validate(
        {
            "database.hostname.user.defined": pg.HOST,
            "database.port.user.defined": pg.PORT,
            "database.user": pg.USER,
            "database.password": pg.PASSWORD,
            "database.dbname": db,
            "database.sslmode": "disable",
            "table.include.list.user.defined": tables,
            "slot.name": f"tf_test_{tag}",
            "publication.name": f"tf_pub_{tag}",
            **extra,
        }
    )


def sql(db: str, *statements: str, params: Any = None) -> None:
    with psycopg.connect(pg.dsn(db), autocommit=True) as conn:
        for s in statements:
            conn.execute(s, params)


def fetch(db: str, query: str, params: Any = None) -> Any:
    with psycopg.connect(pg.dsn(db), autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
        return row[0] if row else None


def poll_until(
    source: PostgresSource,
    done: Callable[[list[Record]], bool],
    timeout: float = 30,
    max_records: int = 1000,
) -> list[Record]:
    got: list[Record] = []
    deadline = time.monotonic() + timeout
    while not done(got):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout} s; got {got[-5:]}")
        got += source.poll(0.5, max_records)
    return got


def commits(records: list[Record], heartbeat: bool = False) -> list[Commit]:
    return [r for r in records if isinstance(r, Commit) and r.heartbeat == heartbeat]


def changes(records: list[Record]) -> list[ChangeEvent]:
    return [r for r in records if isinstance(r, ChangeEvent)]


def slot_lsn(slot: str, column: str = "confirmed_flush_lsn") -> int:
    value = fetch(
        "postgres",
        f"SELECT ({column} - '0/0')::int8 FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    )
    return int(value) if value is not None else -1


ALL_TYPES = """
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE TABLE t (
  id int PRIMARY KEY, i2 int2, i8 int8, num numeric(30,10), f4 float4, f8 float8, txt text,
  vc varchar(20), flag bool, d date, tm time, ts timestamp, tstz timestamptz, iv interval,
  u uuid, j json, jb jsonb, b bytea, ia int[], ta text[], m mood, p posint, addr inet, cash money
);
"""

ROW = """
INSERT INTO t VALUES (
  1, -32768, 9223372036854775807, 12345678901234567890.0123456789, 1.5, 'NaN', 'héllo',
  'short', true, '2024-02-29', '13:45:01.25', '2024-01-02 03:04:05.123456',
  '2024-01-02 03:04:05.5+02', '1 year 2 months 3 days 04:05:06.5',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"a": [1, 2.50]}', '{"b": null}', '\\xdead00ff',
  '{{1,NULL},{3,4}}',
  ARRAY['a b', NULL, 'NULL', 'q"uote', ''], 'sad', 7, '192.168.0.1/24', 12.34
)
"""

EXPECTED = {
    "id": 1,
    "i2": -32768,
    "i8": 9223372036854775807,
    "num": Decimal("12345678901234567890.0123456789"),
    "f4": 1.5,
    "txt": "héllo",
    "vc": "short",
    "flag": True,
    "d": date(2024, 2, 29),
    "tm": dtime(13, 45, 1, 250000),
    "ts": datetime(2024, 1, 2, 3, 4, 5, 123456),
    "tstz": datetime(2024, 1, 2, 1, 4, 5, 500000, tzinfo=UTC),
    "iv": "P1Y2M3DT4H5M6.5S",
    "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "j": '{"a": [1, 2.50]}',
    "jb": '{"b": null}',
    "b": b"\xde\xad\x00\xff",
    "ia": [[1, None], [3, 4]],
    "ta": ["a b", None, "NULL", 'q"uote', ""],
    "m": "sad",
    "p": 7,
    "addr": "192.168.0.1/24",
    "cash": "$12.34",
}

KINDS = {
    "id": ("int4", "int"), "i2": ("int2", "int"), "i8": ("int8", "int"),
    "num": ("numeric(30,10)", "decimal"), "f4": ("float4", "float"), "f8": ("float8", "float"),
    "txt": ("text", "text"), "vc": ("varchar(20)", "text"), "flag": ("bool", "bool"),
    "d": ("date", "date"), "tm": ("time", "time"), "ts": ("timestamp", "timestamp"),
    "tstz": ("timestamptz", "timestamptz"), "iv": ("interval", "interval"),
    "u": ("uuid", "uuid"), "j": ("json", "json"), "jb": ("jsonb", "json"),
    "b": ("bytea", "bytes"), "ia": ("int4[]", "array"), "ta": ("text[]", "array"),
    "m": ("mood", "enum"), "p": ("posint", "int"), "addr": ("inet", "other"),
    "cash": ("money", "other"),
}  # fmt: skip


def assert_row(row: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    assert row is not None
    f8 = row.pop("f8")
    assert f8 != f8  # NaN
    for key, value in expected.items():
        assert row[key] == value, key
        assert type(row[key]) is type(value), key
    assert set(row) == set(expected)


def test_every_type_insert_update_delete_truncate(
    db: str, opened: Callable[..., PostgresSource]
) -> None:
    sql(db, ALL_TYPES)
    src = opened(make_config(db))
    sql(
        db,
        ROW,
        "UPDATE t SET txt = 'changed', ia = '{}' WHERE id = 1",
        "INSERT INTO t (id) VALUES (2)",
        "DELETE FROM t WHERE id = 1",
        "TRUNCATE t",
    )
    got = poll_until(src, lambda r: len(commits(r)) >= 5)
    ins, upd, ins_null, dele, trunc = changes(got)
    assert ins.op is Op.CREATE and ins.before is None
    assert_row(ins.after, EXPECTED)
    assert upd.op is Op.UPDATE and upd.before is None  # key unchanged, default identity
    assert_row(upd.after, {**EXPECTED, "txt": "changed", "ia": []})
    assert ins_null.after == {"id": 2, **{k: None for k in KINDS if k != "id"}}
    assert dele.op is Op.DELETE and dele.before == {"id": 1} and dele.after is None
    assert trunc.op is Op.TRUNCATE and trunc.table.name == "public.t"
    columns = {c.name: (c.type, c.kind) for c in ins.table.columns}
    assert columns == KINDS
    assert ins.table.key == ("id",)
    assert ins.txid is not None and ins.txid != upd.txid
    assert abs(ins.commit_ts_ms - time.time() * 1000) < 60_000
    positions = [r.position["lsn"] for r in got if not isinstance(r, Message)]
    assert positions == sorted(positions)


def test_unchanged_toast_arrives_as_unchanged(
    db: str, opened: Callable[..., PostgresSource]
) -> None:
    sql(db, "CREATE TABLE t (id int PRIMARY KEY, big text, n int)")
    src = opened(make_config(db))
    # md5 chains do not compress, so the value is stored out of line (TOASTed).
    sql(
        db,
        "INSERT INTO t SELECT 1, string_agg(md5(g::text), '') , 0 FROM generate_series(1, 400) g",
        "UPDATE t SET n = 1 WHERE id = 1",
    )
    got = poll_until(src, lambda r: len(commits(r)) >= 2)
    ins, upd = changes(got)
    assert ins.after is not None and len(ins.after["big"]) == 12800
    assert upd.after == {"id": 1, "big": UNCHANGED, "n": 1}
    assert upd.after["big"] is UNCHANGED


def test_large_transaction_is_streamed_with_bounded_memory(
    db: str, opened: Callable[..., PostgresSource]
) -> None:
    rows = 200_000
    sql(db, "CREATE TABLE t (id int PRIMARY KEY, payload text)")
    src = opened(make_config(db))
    sql(
        db,
        f"INSERT INTO t SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, {rows}) g",
    )
    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = baseline
    seen = 0
    ids_ok = True
    deadline = time.monotonic() + 240
    end: Commit | None = None
    while end is None:
        assert time.monotonic() < deadline, f"only {seen} rows after 240 s"
        batch = src.poll(1.0, 1000)
        assert len(batch) <= 1000  # invariant 6
        for r in batch:
            if isinstance(r, ChangeEvent):
                seen += 1
                ids_ok = ids_ok and r.after is not None and r.after["id"] == seen
            elif isinstance(r, Commit) and not r.heartbeat:
                end = r
        peak = max(peak, process.memory_info().rss)
    assert seen == rows and ids_ok
    # All 200k events held at once would take well over 150 MB; a bounded reader stays flat.
    assert peak - baseline < 64 * 1024 * 1024, f"RSS grew by {(peak - baseline) >> 20} MB"
    src.ack(end.position)


def test_ack_advances_slot_and_reopen_redelivers_unacked(
    db: str, opened: Callable[..., PostgresSource]
) -> None:
    sql(db, "CREATE TABLE t (id int PRIMARY KEY)")
    config = make_config(db, **{"heartbeat.enabled": False})
    src = opened(config)
    for i in (1, 2, 3):
        sql(db, f"INSERT INTO t VALUES ({i})")
    got = poll_until(src, lambda r: len(commits(r)) >= 3)
    first, second, third = commits(got)
    before = slot_lsn(config.slot_name)
    assert before < first.position["lsn"]

    src.ack(first.position)
    # invariant 1: the slot moves to exactly the acknowledged position, never beyond.
    deadline = time.monotonic() + 10
    while slot_lsn(config.slot_name) != first.position["lsn"]:
        assert time.monotonic() < deadline, "confirmed_flush_lsn did not reach the acked LSN"
        src.poll(0.2, 10)
    src.ack({"lsn": before})  # invariant 2: an older ack never moves the slot back
    src.poll(0.2, 10)
    src.close()
    assert slot_lsn(config.slot_name) == first.position["lsn"]

    # Restart from the checkpoint: the unacked transactions come again, nothing is skipped.
    again = opened(config, first.position)
    replay = poll_until(again, lambda r: len(commits(r)) >= 2)
    assert [e.after for e in changes(replay)] == [{"id": 2}, {"id": 3}]
    assert [c.position for c in commits(replay)] == [second.position, third.position]
    # invariant 1: an ack past what this instance delivered moves the slot only that far (a
    # keepalive may have been delivered as a heartbeat commit after the third transaction).
    delivered = max(c.position["lsn"] for c in commits(replay) + commits(replay, True))
    again.ack({"lsn": delivered + 1_000_000})
    again.close()
    assert slot_lsn(config.slot_name) == delivered


def test_slot_ahead_of_checkpoint_is_a_gap(db: str, opened: Callable[..., PostgresSource]) -> None:
    sql(db, "CREATE TABLE t (id int PRIMARY KEY)")
    config = make_config(db, **{"heartbeat.enabled": False})
    src = opened(config)
    sql(db, "INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)")
    first, second = commits(poll_until(src, lambda r: len(commits(r)) >= 2))
    src.ack(second.position)
    src.close()
    with pytest.raises(TerminalError, match=r"advanced to .* past this source's checkpoint"):
        opened(config, first.position)


def test_dropped_slot_with_a_position_is_terminal(
    db: str, opened: Callable[..., PostgresSource]
) -> None:
    sql(db, "CREATE TABLE t (id int PRIMARY KEY)")
    config = make_config(db)
    src = opened(config)
    src.close()
    position = {"lsn": slot_lsn(config.slot_name)}
    src.drop()
    assert slot_lsn(config.slot_name) == -1
    with pytest.raises(TerminalError, match=r"was dropped; changes after LSN .* may be lost"):
        opened(config, position)
    assert slot_lsn(config.slot_name) == -1  # never silently recreated


def retained_wal(slot: str) -> int:
    """Bytes of WAL the slot pins: everything after its restart_lsn."""
    return int(
        fetch(
            "postgres",
            "SELECT (pg_current_wal_lsn() - restart_lsn)::int8 FROM pg_replication_slots"
            " WHERE slot_name = %s",
            (slot,),
        )
    )


def test_idle_database_advances_while_others_write_wal(
    db: str, opened: Callable[..., PostgresSource]
) -> None:
    sql(db, "CREATE TABLE t (id int PRIMARY KEY)")
    config = make_config(db, **{"heartbeat.interval.ms": 500})
    src = opened(config)
    heartbeats = 0

    def poll_and_ack() -> None:
        nonlocal heartbeats
        for r in src.poll(0.5, 1000):
            assert not isinstance(r, ChangeEvent)
            if isinstance(r, Commit):
                heartbeats += r.heartbeat
                src.ack(r.position)  # what the runtime does once a heartbeat is durable

    confirmed = [slot_lsn(config.slot_name)]
    with pg.temp_database("tfbusy") as busy:
        sql(busy, "CREATE TABLE noise (id serial PRIMARY KEY, pad text)")
        wal_start = int(fetch("postgres", "SELECT (pg_current_wal_lsn() - '0/0')::int8"))
        # Status updates go out at most once a second, so write for a few seconds.
        until = time.monotonic() + 4
        while time.monotonic() < until:
            sql(
                busy,
                "INSERT INTO noise (pad) SELECT repeat('x', 200) FROM generate_series(1, 20000)",
            )
            poll_and_ack()
            confirmed.append(slot_lsn(config.slot_name))
        written = int(fetch("postgres", "SELECT (pg_current_wal_lsn() - '0/0')::int8")) - wal_start
    assert heartbeats > 0
    assert confirmed == sorted(confirmed) and len(set(confirmed)) >= 4, confirmed
    # A checkpoint logs the running-transactions snapshot that lets restart_lsn follow the
    # confirmed position (the server also logs one every 15 s; this just makes it quick).
    sql("postgres", "CHECKPOINT")
    deadline = time.monotonic() + 30
    # invariant 4: the idle slot does not pin the WAL the other database wrote.
    while retained_wal(config.slot_name) > written / 4:
        assert time.monotonic() < deadline, (retained_wal(config.slot_name), written)
        poll_and_ack()


def test_heartbeat_table_mode(db: str, opened: Callable[..., PostgresSource]) -> None:
    sql(db, "CREATE TABLE t (id int PRIMARY KEY)", "CREATE SCHEMA ops")
    config = make_config(
        db,
        **{
            "heartbeat.interval.ms": 200,
            "heartbeat.use.logical.message": False,
            "heartbeat.data.collection.schema.or.database": "ops",
        },
    )
    src = opened(config)
    poll_until(src, lambda r: fetch(db, "SELECT count(*) FROM ops.tideflow_heartbeat") == 1)
    written = int(fetch(db, "SELECT (pg_current_wal_lsn() - '0/0')::int8"))
    got = poll_until(
        src, lambda r: any(c.position["lsn"] >= written for c in commits(r, heartbeat=True))
    )
    assert not changes(got)  # the heartbeat table is not captured


def test_logical_messages_and_schema_include(
    db: str, opened: Callable[..., PostgresSource]
) -> None:
    sql(
        db,
        "CREATE SCHEMA sales",
        "CREATE TABLE sales.a (id int PRIMARY KEY)",
        "CREATE TABLE sales.b (id int PRIMARY KEY, secret text, note text)",
        "CREATE TABLE public.t (id int PRIMARY KEY)",
    )
    config = make_config(
        db,
        tables="public.t",
        **{
            "schema.include.list": "sales",
            "column.exclude.list.user.defined": "sales.b.secret",
        },
    )
    src = opened(config)
    assert src.tables() == ["public.t", "sales.a", "sales.b"]
    sql(
        db,
        "INSERT INTO sales.b VALUES (1, 's3cret', 'hi')",
        "SELECT pg_logical_emit_message(true, 'wm', 'low')",
        "SELECT pg_logical_emit_message(false, 'wm', 'now')",
    )
    got = poll_until(src, lambda r: len([m for m in r if isinstance(m, Message)]) >= 2)
    (event,) = changes(got)
    assert event.table.name == "sales.b" and event.after == {"id": 1, "note": "hi"}
    messages = [(m.prefix, m.content, m.transactional) for m in got if isinstance(m, Message)]
    assert messages == [("wm", b"low", True), ("wm", b"now", False)]


def test_publication_follows_the_include_list(
    db: str, opened: Callable[..., PostgresSource]
) -> None:
    sql(db, "CREATE TABLE t (id int PRIMARY KEY)", "CREATE TABLE u (id int PRIMARY KEY)")
    config = make_config(db, tables="public.t")
    opened(config).close()
    grown = config.model_copy(update={"table_include": "public.t,public.u"})
    src = opened(grown)
    published = fetch(
        db,
        "SELECT array_agg(tablename::text ORDER BY tablename) FROM pg_publication_tables "
        "WHERE pubname = %s",
        (config.publication_name,),
    )
    assert published == ["t", "u"]
    sql(db, "INSERT INTO u VALUES (5)")
    got = poll_until(src, lambda r: bool(changes(r)))
    assert changes(got)[0].table.name == "public.u"


def test_drop_with_force_removes_an_active_slot_and_our_publication(
    db: str, opened: Callable[..., PostgresSource]
) -> None:
    sql(db, "CREATE TABLE t (id int PRIMARY KEY)", "CREATE PUBLICATION theirs FOR TABLE t")
    config = make_config(db)
    holder = opened(config)  # keeps the slot active
    PostgresSource(config, name="other").drop(force=True)
    assert slot_lsn(config.slot_name) == -1
    assert (
        fetch(
            db, "SELECT count(*) FROM pg_publication WHERE pubname = %s", (config.publication_name,)
        )
        == 0
    )
    holder.close()
    # A publication someone else created is left alone.
    mine = config.model_copy(update={"publication_name": "theirs"})
    PostgresSource(mine, name="x").drop()
    assert fetch(db, "SELECT count(*) FROM pg_publication WHERE pubname = 'theirs'") == 1


def test_lost_connection_is_transient(db: str, opened: Callable[..., PostgresSource]) -> None:
    sql(db, "CREATE TABLE t (id int PRIMARY KEY)")
    config = make_config(db)
    src = opened(config)
    sql(
        "postgres",
        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = %s",
        params=(config.slot_name,),
    )
    # libpq reports the cut in different words depending on timing; what matters is that the
    # runtime is told to retry.
    with pytest.raises(TransientError, match=r"terminating connection|cannot reach|COPY"):
        poll_until(src, lambda r: False, timeout=30)
    src.close()
    # What the runtime does next: reopen from its checkpoint.
    again = opened(config, {"lsn": slot_lsn(config.slot_name)})
    sql(db, "INSERT INTO t VALUES (1)")
    assert changes(poll_until(again, lambda r: bool(changes(r))))[0].after == {"id": 1}


def test_schema_change_mid_stream(db: str, opened: Callable[..., PostgresSource]) -> None:
    sql(db, "CREATE TABLE t (id int PRIMARY KEY, a text)")
    src = opened(make_config(db))
    sql(
        db,
        "INSERT INTO t VALUES (1, 'x')",
        "ALTER TABLE t ADD COLUMN price numeric(8,3) NOT NULL DEFAULT 0, DROP COLUMN a",
        "INSERT INTO t VALUES (2, 1.5)",
    )
    first, second = changes(poll_until(src, lambda r: len(changes(r)) >= 2))
    assert first.after == {"id": 1, "a": "x"} and first.table.version == 1
    assert second.after == {"id": 2, "price": Decimal("1.500")}
    assert second.table.version == 2
    price = second.table.column("price")
    assert price is not None and (price.type, price.nullable) == ("numeric(8,3)", False)


def test_held_back_reader_keeps_its_connection(
    db: str, opened: Callable[..., PostgresSource], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A runtime that stops polling (back-pressure) must not lose the replication connection."""
    monkeypatch.setattr(
        connection, "SESSION_OPTIONS", connection.SESSION_OPTIONS + " -c wal_sender_timeout=2s"
    )
    monkeypatch.setattr(PostgresSource, "status_interval", 0.5)
    sql(db, "CREATE TABLE t (id int PRIMARY KEY)")
    config = make_config(db, **{"heartbeat.enabled": False})
    src = opened(config)
    walsender = fetch(
        "postgres",
        "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s",
        (config.slot_name,),
    )
    sql(db, "INSERT INTO t VALUES (1)")
    time.sleep(6)  # the scenario itself: three wal_sender_timeouts without a poll
    got = poll_until(src, lambda r: bool(changes(r)))
    assert changes(got)[0].after == {"id": 1}
    assert (
        fetch(
            "postgres",
            "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s",
            (config.slot_name,),
        )
        == walsender
    )
