"""The mysql/mariadb source against the real MariaDB from scripts/services/mariadb.sh."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.support import mysql
from tideflow.connectors.sources.mysql import rowcodec
from tideflow.connectors.sources.mysql.config import MySQLSourceConfig
from tideflow.connectors.sources.mysql.source import MySQLSource
from tideflow.connectors.sources.mysql.types import format_time
from tideflow.errors import TerminalError, TideflowError
from tideflow.events import ChangeEvent, Commit, Op, Record

pytestmark = pytest.mark.integration

Factory = Callable[..., MySQLSource]


@pytest.fixture
def db() -> Iterator[str]:
    with mysql.temp_database("tfsrc") as name:
        yield name


@pytest.fixture
def make_source(tmp_path: Path) -> Iterator[Factory]:
    opened: list[MySQLSource] = []

    def make(name: str = "src", state: Path | None = None, **keys: Any) -> MySQLSource:
        config = MySQLSourceConfig.model_validate(mysql.source_config(**keys))
        src = MySQLSource(config, name=name, state_dir=state or tmp_path / "state")
        opened.append(src)
        return src

    yield make
    for src in opened:
        src.close()


def drain(
    src: MySQLSource, done: Callable[[list[Record]], bool], timeout: float = 15.0
) -> list[Record]:
    """Poll until ``done(records so far)`` or fail at the deadline."""
    got: list[Record] = []
    deadline = time.monotonic() + timeout
    while not done(got):
        assert time.monotonic() < deadline, f"timed out; got {got!r}"
        got.extend(src.poll(0.3, 500))
    return got


def changes(records: list[Record]) -> list[ChangeEvent]:
    return [r for r in records if isinstance(r, ChangeEvent)]


def n_changes(n: int) -> Callable[[list[Record]], bool]:
    return lambda got: len(changes(got)) >= n and isinstance(got[-1], Commit)


EVERY_TYPE = """
CREATE TABLE `{db}`.t (
  id BIGINT UNSIGNED PRIMARY KEY, ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT,
  mi MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, d DECIMAL(30,10), f FLOAT,
  db DOUBLE, dt DATETIME(6), ts TIMESTAMP(3) NULL, dd DATE, tm TIME(6), y YEAR, c CHAR(5),
  vc VARCHAR(300), tx TEXT, j JSON, e ENUM('a','b','c'), s SET('x','y','z'), b1 BIT(1),
  b12 BIT(12), bl BLOB, bn BINARY(4), vb VARBINARY(10), dt0 DATETIME NULL, d0 DATE NULL
)"""

ROW = (
    "18446744073709551615, -128, 255, -32768, 16777215, -2147483648, 4294967295, "
    "-9223372036854775808, -12345678901234567890.0123456789, 1.5, 2.25, "
    "'2024-01-02 03:04:05.123456', '2024-01-02 03:04:05.123', '2024-02-29', '-838:59:59', 2024, "
    "'ab', 'héllo wörld ✓', 'long text', '{\"a\": [1, 2.5, \"x\"], \"b\": null}', 'b', 'z,x', "
    "b'1', b'101010101010', x'00ff10', x'0102', x'0a0b', '0000-00-00 00:00:00', '0000-00-00'"
)

EXPECTED = {
    "id": Decimal(18446744073709551615),
    "ti": -128,
    "tiu": 255,
    "si": -32768,
    "mi": 16777215,
    "i": -2147483648,
    "iu": 4294967295,
    "bi": -9223372036854775808,
    "d": Decimal("-12345678901234567890.0123456789"),
    "f": 1.5,
    "db": 2.25,
    "dt": datetime(2024, 1, 2, 3, 4, 5, 123456),
    "ts": datetime(2024, 1, 2, 3, 4, 5, 123000, tzinfo=UTC),
    "dd": date(2024, 2, 29),
    "tm": "-838:59:59",
    "y": 2024,
    "c": "ab",
    "vc": "héllo wörld ✓",
    "tx": "long text",
    "j": '{"a": [1, 2.5, "x"], "b": null}',
    "e": "b",
    "s": "x,z",
    "b1": True,
    "b12": bytes([0b1010, 0b10101010]),
    "bl": b"\x00\xff\x10",
    "bn": b"\x01\x02\x00\x00",
    "vb": b"\x0a\x0b",
    "dt0": None,
    "d0": None,
}

KINDS = {
    "id": "decimal",
    "ti": "int",
    "bi": "int",
    "d": "decimal",
    "f": "float",
    "dt": "timestamp",
    "ts": "timestamptz",
    "dd": "date",
    "tm": "time",
    "y": "int",
    "vc": "text",
    "j": "json",
    "e": "enum",
    "s": "text",
    "b1": "bool",
    "b12": "bytes",
    "bl": "bytes",
    "bn": "bytes",
}


@pytest.mark.parametrize("decoder", ["fast", "library"])
def test_every_type_insert_update_delete(
    db: str, make_source: Factory, decoder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if decoder == "library":  # both row decoders must produce the same values
        monkeypatch.setattr(rowcodec, "plan", lambda columns: None)
    else:
        calls: list[int] = []
        real = rowcodec.decode
        monkeypatch.setattr(rowcodec, "decode", lambda *a: calls.append(1) or real(*a))
    mysql.execute(EVERY_TYPE.format(db=db))
    src = make_source(**{"database.include.list.user.defined": db})
    assert src.preflight() == []
    src.open(None)
    mysql.execute(
        "SET SESSION sql_mode = ''",
        f"INSERT INTO `{db}`.t VALUES ({ROW})",
        f"UPDATE `{db}`.t SET vc = 'changed', tm = '12:30:00.5', s = '', dt0 = NULL",
        f"DELETE FROM `{db}`.t",
    )
    got = changes(drain(src, n_changes(3)))
    assert [e.op for e in got] == [Op.CREATE, Op.UPDATE, Op.DELETE]
    ins, upd, dele = got
    assert ins.after == EXPECTED
    assert {c.name: c.kind for c in ins.table.columns if c.name in KINDS} == KINDS
    assert ins.table.key == ("id",) and ins.table.name == f"{db}.t"
    assert upd.before == EXPECTED
    assert upd.after == {**EXPECTED, "vc": "changed", "tm": dtime(12, 30, 0, 500000), "s": ""}
    assert dele.before == upd.after and dele.after is None
    if decoder == "fast":
        assert len(calls) == 3


def test_binary_handling_mode_and_column_filters(db: str, make_source: Factory) -> None:
    mysql.execute(f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY, b VARBINARY(8), secret TEXT)")
    src = make_source(
        **{
            "table.include.list.user.defined": f"{db}.t",
            "binary.handling.mode": "base64",
            "column.exclude.list.user.defined": f"{db}.t.secret",
        }
    )
    src.open(None)
    mysql.execute(f"INSERT INTO `{db}`.t VALUES (1, x'fffe', 'hide me')")
    (ev,) = changes(drain(src, n_changes(1)))
    assert ev.after == {"id": 1, "b": "//4="}
    assert [c.name for c in ev.table.columns] == ["id", "b"]
    assert ev.table.column("b").kind == "text"  # type: ignore[union-attr]


def test_ddl_mid_stream_and_replay_with_schema_history(db: str, make_source: Factory) -> None:
    mysql.execute(f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY, a VARCHAR(10), b INT)")
    src = make_source(**{"database.include.list.user.defined": db})
    src.open(None)
    start = src.poll(0.5, 10)  # nothing yet; remember where we began
    assert not changes(list(start))
    mysql.execute(
        f"INSERT INTO `{db}`.t VALUES (1, 'one', 10)",
        f"ALTER TABLE `{db}`.t ADD COLUMN c DECIMAL(8,2) NOT NULL DEFAULT 1.50 AFTER a",
        f"INSERT INTO `{db}`.t VALUES (2, 'two', 2.25, 20)",
        f"ALTER TABLE `{db}`.t DROP COLUMN b",
        f"INSERT INTO `{db}`.t VALUES (3, 'three', 3.75)",
        f"ALTER TABLE `{db}`.t MODIFY COLUMN c DECIMAL(10,3) NULL",
        f"INSERT INTO `{db}`.t VALUES (4, 'four', 4.125)",
        f"ALTER TABLE `{db}`.t CHANGE a renamed VARCHAR(20), RENAME TO `{db}`.t2",
        f"CREATE TABLE `{db}`.t3 LIKE `{db}`.t2",
        f"INSERT INTO `{db}`.t3 VALUES (5, 'five', 5.5)",
    )
    first = drain(src, n_changes(5))
    rows = [(e.table.table, e.table.version, e.after) for e in changes(first)]
    assert rows[0][2] == {"id": 1, "a": "one", "b": 10}
    assert rows[1][2] == {"id": 2, "a": "two", "c": Decimal("2.25"), "b": 20}
    assert rows[2][2] == {"id": 3, "a": "three", "c": Decimal("3.75")}
    assert rows[3][2] == {"id": 4, "a": "four", "c": Decimal("4.125")}
    assert rows[4][0] == "t3"
    assert rows[4][2] == {"id": 5, "renamed": "five", "c": Decimal("5.500")}
    versions = [v for _, v, _ in rows[:4]]
    assert versions == sorted(versions) and len(set(versions)) == 4
    assert changes(first)[1].table.column("c").type == "decimal(8,2)"  # type: ignore[union-attr]
    assert changes(first)[3].table.column("c").type == "decimal(10,3)"  # type: ignore[union-attr]

    # Replaying from the first commit with a new reader (same state dir) must decode the old
    # events with the shapes they were written with, although the table now looks different.
    first_commit = next(r for r in first if isinstance(r, Commit) and not r.heartbeat)
    src.close()
    again = make_source(**{"database.include.list.user.defined": db})  # same state dir
    again.open(first_commit.position)
    replay = [(e.table.table, e.after) for e in changes(drain(again, n_changes(4)))]
    assert replay == [(t, a) for t, _, a in rows[1:]]


def test_ack_and_resume_from_checkpoint_has_no_gaps(db: str, make_source: Factory) -> None:
    mysql.execute(f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v INT)")
    keys = {"database.include.list.user.defined": db}
    src = make_source(**keys)
    src.open(None)
    for i in range(10):
        mysql.execute(f"INSERT INTO `{db}`.t VALUES ({i}, {i})")
    got = drain(src, n_changes(10))
    commits = [r for r in got if isinstance(r, Commit) and not r.heartbeat]
    checkpoint = commits[3]  # rows 0..3 are durable
    src.ack(checkpoint.position)
    # After a reopen the runtime acknowledges batches an earlier instance delivered: positions
    # ahead of this instance are progress, not an error (the binlog releases nothing).
    src.ack(commits[-1].position)
    with pytest.raises(TerminalError):
        src.ack({"binlog_file": "", "binlog_pos": 4})
    src.close()
    mysql.execute(*(f"INSERT INTO `{db}`.t VALUES ({i}, {i})" for i in range(10, 15)))
    again = make_source(**keys)
    again.open(checkpoint.position)
    ids = [e.after["id"] for e in changes(drain(again, n_changes(11))) if e.after]
    assert ids == list(range(4, 15))


def test_resume_by_file_position_on_mariadb(db: str, make_source: Factory) -> None:
    """snapshot.gtid=No resumes by file/offset (the library alone would replay everything)."""
    mysql.execute(f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY)")
    keys = {"database.include.list.user.defined": db, "snapshot.gtid": "No"}
    src = make_source(**keys)
    src.open(None)
    mysql.execute(f"INSERT INTO `{db}`.t VALUES (1)", f"INSERT INTO `{db}`.t VALUES (2)")
    got = drain(src, n_changes(2))
    first = next(r for r in got if isinstance(r, Commit) and not r.heartbeat)
    src.close()
    again = make_source(**keys)
    again.open(
        {"binlog_file": first.position["binlog_file"], "binlog_pos": first.position["binlog_pos"]}
    )
    mysql.execute(f"INSERT INTO `{db}`.t VALUES (3)")
    ids = [e.after["id"] for e in changes(drain(again, n_changes(2))) if e.after]
    assert ids == [2, 3]


def test_heartbeats_advance_an_idle_source(db: str, make_source: Factory) -> None:
    mysql.execute(
        f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY)", f"CREATE TABLE `{db}`.other (x INT)"
    )
    src = make_source(
        **{
            "table.include.list.user.defined": f"{db}.t",
            "heartbeat.data.collection.schema.or.database": db,
            "heartbeat.interval.ms": 200,
        }
    )
    src.open(None)
    opened_at = drain(src, lambda got: any(isinstance(r, Commit) for r in got))
    first = next(r for r in opened_at if isinstance(r, Commit))
    mysql.execute(f"INSERT INTO `{db}`.other VALUES (1)")  # not captured

    def moved(got: list[Record]) -> bool:
        beats = [r for r in got if isinstance(r, Commit) and r.heartbeat]
        return bool(beats) and beats[-1].position["binlog_pos"] > first.position["binlog_pos"]

    got = drain(src, moved)
    assert not changes(got)


def test_preflight_reports_statement_binlog_format(db: str, make_source: Factory) -> None:
    mysql.execute(f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY)")
    src = make_source(**{"database.include.list.user.defined": db})
    mysql.execute("SET GLOBAL binlog_format = 'STATEMENT'")
    try:
        problems = src.preflight()
    finally:
        mysql.execute("SET GLOBAL binlog_format = 'ROW'")
    assert [p.check for p in problems if p.fatal] == ["binlog"]
    assert "binlog_format is STATEMENT" in problems[0].message


def test_preflight_reports_missing_privileges_and_keyless_tables(
    db: str, make_source: Factory
) -> None:
    mysql.execute(
        f"CREATE TABLE `{db}`.keyed (id INT PRIMARY KEY)",
        f"CREATE TABLE `{db}`.keyless (v INT)",
        "DROP USER IF EXISTS 'tf_noreplica'@'127.0.0.1'",
        "CREATE USER 'tf_noreplica'@'127.0.0.1' IDENTIFIED BY 'pw'",
        f"GRANT SELECT ON `{db}`.`keyless` TO 'tf_noreplica'@'127.0.0.1'",
    )
    try:
        src = make_source(
            **{
                "database.user": "tf_noreplica",
                "database.password": "pw",
                "table.include.list.user.defined": f"{db}.keyed,{db}.keyless",
            }
        )
        problems = src.preflight()
    finally:
        mysql.execute("DROP USER 'tf_noreplica'@'127.0.0.1'")
    messages = " | ".join(p.message for p in problems)
    assert "REPLICATION SLAVE" in messages
    assert "BINLOG MONITOR" in messages
    assert f"{db}.keyed" in messages  # not readable (no SELECT) or not visible
    keyless = [p for p in problems if p.check == "keyless"]
    assert keyless and not keyless[0].fatal


def test_preflight_reports_server_id_clash(db: str, make_source: Factory) -> None:
    mysql.execute(f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY)")
    keys = {"database.include.list.user.defined": db, "database.server.id": 424242}
    running = make_source(name="first", **keys)
    running.open(None)
    running.poll(0.3, 10)
    second = make_source(name="second", **keys)
    problems = second.preflight()
    assert [p.check for p in problems] == ["server_id"]
    assert "424242" in problems[0].message


@pytest.mark.parametrize(
    ("keys", "check", "words"),
    [
        ({"database.password": "wrong"}, "connectivity", "access denied"),
        ({"database.port.user.defined": 1}, "connectivity", "cannot connect"),
        ({"database.connectionTimeZone": "Mars/Olympus"}, "connectivity", "time zone"),
        ({"table.include.list.user.defined": "nodot"}, "config", "database.table"),
    ],
    ids=["wrong-password", "unreachable", "bad-time-zone", "bad-table-name"],
)
def test_preflight_bad_connection_settings(
    make_source: Factory, keys: dict[str, Any], check: str, words: str
) -> None:
    src = make_source(**{"database.include.list.user.defined": "mysql", **keys})
    started = time.monotonic()
    problems = src.preflight()
    assert time.monotonic() - started < 15
    assert [p.check for p in problems] == [check]
    assert words in problems[0].message.lower()


def test_open_with_wrong_password_is_terminal(make_source: Factory) -> None:
    src = make_source(**{"database.password": "wrong", "database.include.list.user.defined": "x"})
    with pytest.raises(TerminalError, match="access denied"):
        src.open(None)


def test_unreachable_host_is_transient(make_source: Factory) -> None:
    src = make_source(
        **{"database.port.user.defined": 1, "database.include.list.user.defined": "x"}
    )
    with pytest.raises(TideflowError) as info:
        src.open(None)
    assert info.value.transient


def purge_all_but_newest(timeout: float = 20.0) -> None:
    """PURGE waits for readers and the binlog checkpoint; retry until it took effect."""
    newest = mysql.execute("SHOW MASTER STATUS")[0][0]
    deadline = time.monotonic() + timeout
    while True:
        mysql.execute(f"PURGE BINARY LOGS TO '{newest}'")
        if mysql.execute("SHOW BINARY LOGS")[0][0] == newest:
            return
        assert time.monotonic() < deadline, "binlogs were not purged"
        time.sleep(0.2)  # the server releases a closed reader's dump thread asynchronously


def test_purged_binlog_is_a_terminal_error(db: str, make_source: Factory) -> None:
    mysql.execute(f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY)")
    for gtid in ("Yes", "No"):
        keys = {"database.include.list.user.defined": db, "snapshot.gtid": gtid}
        src = make_source(**keys)
        src.open(None)
        mysql.execute(f"INSERT INTO `{db}`.t VALUES ({1 if gtid == 'Yes' else 2})")
        commit = next(r for r in drain(src, n_changes(1)) if isinstance(r, Commit))
        src.close()
        # A change after the checkpoint lands in the binlog that gets purged.
        mysql.execute(f"INSERT INTO `{db}`.t VALUES ({3 if gtid == 'Yes' else 4})")
        mysql.execute("FLUSH BINARY LOGS")
        purge_all_but_newest()
        again = make_source(**keys)
        with pytest.raises(TerminalError, match="Re-snapshot") as info:
            again.open(commit.position)
        assert info.value.code == "binlog_purged"


def test_bad_position_is_terminal(make_source: Factory) -> None:
    src = make_source(**{"database.include.list.user.defined": "x"})
    with pytest.raises(TerminalError, match="invalid mysql source position"):
        src.open({"lsn": 5})


def test_tables_lists_captured_tables(db: str, make_source: Factory) -> None:
    mysql.execute(f"CREATE TABLE `{db}`.a (id INT PRIMARY KEY)", f"CREATE TABLE `{db}`.b (id INT)")
    src = make_source(**{"database.include.list.user.defined": db})
    assert src.tables() == [f"{db}.a", f"{db}.b"]


def test_poll_is_bounded_inside_a_big_transaction(db: str, make_source: Factory) -> None:
    mysql.execute(f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY, pad CHAR(100))")
    src = make_source(**{"database.include.list.user.defined": db})
    src.open(None)
    mysql.execute(f"INSERT INTO `{db}`.t SELECT seq, 'x' FROM `{db}`.seq_1_to_5000")
    seen = 0
    deadline = time.monotonic() + 30
    while seen < 5000:
        assert time.monotonic() < deadline
        batch = src.poll(0.5, 100)
        assert len(batch) <= 100  # invariant 6
        seen += len(changes(list(batch)))
    assert seen == 5000


def test_decimals_are_exact_in_every_packing(db: str, make_source: Factory) -> None:
    """Packed DECIMAL: leading/trailing partial groups, signs, zero; same as a SELECT."""
    values = [
        "0",
        "-0.5",
        "1.5",
        "-1",
        "0.0000000001",
        "123456789.123456789",
        "-12345678901234567890.0123456789",
        "99999999999999999999.9999999999",
    ]
    mysql.execute(
        f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY, d DECIMAL(30,10), e DECIMAL(5,0), "
        "g DECIMAL(65,30), h DECIMAL(4,4))"
    )
    src = make_source(**{"database.include.list.user.defined": db})
    src.open(None)
    for i, v in enumerate(values):
        mysql.execute(f"INSERT INTO `{db}`.t VALUES ({i}, {v}, {i * -7}, {v}, -0.{i:04d})")
    got = [e.after for e in changes(drain(src, n_changes(len(values))))]
    expected = mysql.execute(f"SELECT id, d, e, g, h FROM `{db}`.t ORDER BY id")
    assert [tuple(str(v) for v in (r or {}).values()) for r in got] == [
        tuple(str(v) for v in row) for row in expected
    ]


def test_binlog_disabled_is_reported(make_source: Factory) -> None:
    with mysql.scratch_server("--skip-log-bin") as port:
        mysql.execute_on(port, "CREATE DATABASE d", "CREATE TABLE d.t (id INT PRIMARY KEY)")
        src = make_source(
            **{"database.port.user.defined": port, "database.include.list.user.defined": "d"}
        )
        problems = src.preflight()
        assert {p.check for p in problems if p.fatal} == {"binlog"}
        assert "log_bin=OFF" in problems[0].message
        with pytest.raises(TerminalError, match="binary log is disabled"):
            src.open(None)


def test_temporal_edge_values_match_the_server(db: str, make_source: Factory) -> None:
    """TIME/DATETIME/TIMESTAMP with every fractional precision, negatives and range ends."""
    times = [
        "-838:59:59",
        "838:59:59",
        "-00:00:01",
        "-00:00:00.5",
        "-01:02:03.25",
        "00:00:00",
        "23:59:59.999999",
        "24:00:00",
        "-12:00:00.000001",
    ]
    cols = ", ".join(f"t{p} TIME({p})" for p in range(7))
    mysql.execute(
        f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY, {cols}, dt DATETIME(4), ts TIMESTAMP(5) NULL)"
    )
    src = make_source(**{"database.include.list.user.defined": db})
    src.open(None)
    for i, v in enumerate(times):
        values = ", ".join([f"'{v}'"] * 7)
        mysql.execute(
            f"INSERT INTO `{db}`.t VALUES ({i}, {values}, "
            f"'9999-12-31 23:59:59.9999', '2038-01-19 03:14:07.12345')"
        )
    got = [e.after for e in changes(drain(src, n_changes(len(times))))]
    rows = mysql.execute("SET SESSION time_zone = '+00:00'", f"SELECT * FROM `{db}`.t ORDER BY id")

    def expected(v: Any) -> Any:
        if isinstance(v, timedelta):
            return (
                (datetime.min + v).time()
                if timedelta(0) <= v < timedelta(days=1)
                else (format_time(v))
            )
        return v

    for after, row in zip(got, rows, strict=True):
        assert after is not None
        want = [expected(v) for v in row]
        want[-1] = want[-1].replace(tzinfo=UTC)
        assert list(after.values()) == want
