"""Workload 5: MariaDB binlog → Kafka, Tideflow's ``mariadb`` source against Debezium Server's
MariaDB connector, on the shared MariaDB (127.0.0.1:3306, ROW binlog, GTID).

There is no slot to copy, so both contenders are positioned before the workload is written and
then catch up on the same binlog range, one after the other:

1. a fresh database with ``bench`` (the workload) and ``ready`` (readiness markers only);
2. Tideflow: a source on both tables, a marker row in ``ready`` until it reaches Kafka, then
   the source is paused;
3. Debezium: a priming JVM (``snapshot.mode=no_data``, offsets flushed at once) with a marker
   until it reaches Kafka, then stopped: its offsets file and file-based schema history hold a
   position before the workload;
4. the workload is written once (inserts, updates, deletes mixed in multi-row transactions);
5. each contender, in an order that alternates between repetitions, resumes (Tideflow) or
   restarts from its offsets (Debezium) and is timed from the moment its binlog dump thread
   appears on the server to its last message at the sink, then verified.

Only ``bench`` is compared; the ``ready`` topics are deleted with the database.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support import mysql

from bench.compare import verify
from bench.compare.contenders import Debezium, Sampler, Tideflow
from bench.compare.measure import Context, _finish, wait_topic

COLUMNS = [
    ("id", "int"),
    ("account", "int"),
    ("amount", "dec"),
    ("note", "str"),
    ("created", "dt"),
]
TABLES = (
    "CREATE TABLE `{db}`.bench (id BIGINT PRIMARY KEY, account INT NOT NULL, "
    "amount DECIMAL(12,2) NOT NULL, note VARCHAR(96) NOT NULL, created DATETIME(6) NOT NULL)",
    "CREATE TABLE `{db}`.ready (id BIGINT AUTO_INCREMENT PRIMARY KEY, who VARCHAR(16))",
)
DEBEZIUM_MARIADB = {
    "debezium.source.connector.class": "io.debezium.connector.mariadb.MariaDbConnector",
    # The table is not written while the connector reads its schema: no global read lock on
    # a server other people use.
    "debezium.source.snapshot.locking.mode": "none",
    "debezium.source.schema.history.internal": (
        "io.debezium.storage.file.history.FileSchemaHistory"
    ),
    "debezium.source.schema.history.internal.store.only.captured.databases.ddl": "true",
    "debezium.source.schema.history.internal.store.only.captured.tables.ddl": "true",
    "debezium.source.database.ssl.mode": "disable",
    # Schema change events would go to a topic named after the prefix; Tideflow's sink has no
    # such stream, and the broker does not create topics on first use.
    "debezium.source.include.schema.changes": "false",
}


def write(db: str, rows: int, per_tx: int) -> dict[str, int]:
    """``rows`` inserts of ~150 bytes in ``per_tx``-row transactions; each transaction after
    the first also updates 30 % and deletes 10 % of the previous one's rows. Returns the
    change events by op, counted from the server's affected-row counts."""
    expected = {"c": 0, "u": 0, "d": 0}
    with mysql.connect(autocommit=False, database=db) as conn, conn.cursor() as cur:
        for lo in range(1, rows + 1, per_tx):
            hi = min(lo + per_tx, rows + 1) - 1
            # seq_<lo>_to_<hi>: MariaDB's built-in sequence engine, rows made server-side.
            expected["c"] += cur.execute(
                f"INSERT INTO `{db}`.bench (id, account, amount, note, created) "
                "SELECT seq, seq % 1000, (seq % 100000) / 100, REPEAT(MD5(seq), 3), "
                f"UTC_TIMESTAMP(6) FROM seq_{lo}_to_{hi}"
            )
            if lo > 1:
                prev = (max(1, lo - per_tx), lo - 1)
                expected["u"] += cur.execute(
                    f"UPDATE `{db}`.bench SET amount = amount + 1, account = account + 1 "
                    "WHERE id BETWEEN %s AND %s AND MOD(id, 10) IN (1, 4, 7)",
                    prev,
                )
                expected["d"] += cur.execute(
                    f"DELETE FROM `{db}`.bench WHERE id BETWEEN %s AND %s AND MOD(id, 10) = 9", prev
                )
            conn.commit()
    return expected


def source_state(db: str) -> dict[int, int]:
    """{id: hash of the normalised row} of ``bench``, as ``verify.consume`` rebuilds it."""
    kinds = [k for _, k in COLUMNS[1:]]
    names = ", ".join(c for c, _ in COLUMNS)
    out: dict[int, int] = {}
    with mysql.connect() as conn, conn.cursor() as cur:
        cur.execute(f"SELECT {names} FROM `{db}`.bench")
        for row in cur.fetchall():
            out[int(row[0])] = verify.row_hash(row[1:], kinds)
    return out


class BinlogWatch:
    """When a new ``Binlog Dump`` thread shows up in the processlist (epoch seconds): the
    contender began reading. Threads present at construction are ignored; another user's
    reader starting at the same moment would be taken for the contender's (rare here, and it
    could only move the start by the gap between the two)."""

    def __init__(self) -> None:
        self.active_at: float | None = None
        self._before = self._dump_threads()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    @staticmethod
    def _dump_threads() -> set[int]:
        rows = mysql.execute(
            "SELECT id FROM information_schema.processlist WHERE command LIKE 'Binlog Dump%'"
        )
        return {int(r[0]) for r in rows}

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._dump_threads() - self._before:
                self.active_at = time.time()
                return
            self._stop.wait(0.02)

    def stop(self) -> float | None:
        self._stop.set()
        self._thread.join()
        return self.active_at


@dataclass
class Binlog:
    """One repetition's database and each contender's prepared reader."""

    db: str
    expected: dict[str, int] = field(default_factory=dict)
    topics: list[str] = field(default_factory=list)

    @property
    def events(self) -> int:
        return sum(self.expected.values())

    def mark_until(self, topic: str, who: str, alive: Callable[[], bool], timeout: float) -> str:
        """Insert a marker row into ``ready`` every 2 s until ``topic`` has a message."""
        deadline = time.monotonic() + timeout
        while verify.end_offset(topic) < 1:
            if not alive():
                return f"{who} exited before reading the binlog"
            if time.monotonic() > deadline:
                return f"{who} did not deliver a marker within {timeout:.0f} s"
            mysql.execute(f"INSERT INTO `{self.db}`.ready (who) VALUES (%s)", args=(who,))
            time.sleep(2)
        return ""


@contextlib.contextmanager
def database() -> Iterator[Binlog]:
    """A fresh MariaDB database with the two tables; dropped, with the topics, afterwards."""
    with mysql.temp_database("cmpbinlog") as db:
        for ddl in TABLES:
            mysql.execute(ddl.format(db=db))
        b = Binlog(db)
        try:
            yield b
        finally:
            for topic in b.topics:
                verify.delete_topic(topic)


def server_id() -> int:
    """A replica server id no real replica and no Tideflow default (100000..) is likely to use."""
    return random.randint(10_000, 99_999)


def tideflow_config(db: str) -> dict[str, Any]:
    return mysql.source_config(
        **{
            "table.include.list.user.defined": f"{db}.bench,{db}.ready",
            "database.server.id": server_id(),
        }
    )


def debezium_props(base: dict[str, str], db: str, history: Path) -> dict[str, str]:
    return {
        **base,
        **DEBEZIUM_MARIADB,
        "debezium.source.database.hostname": mysql.HOST,
        "debezium.source.database.port": str(mysql.PORT),
        "debezium.source.database.user": mysql.USER,
        "debezium.source.database.password": mysql.PASSWORD,
        "debezium.source.database.server.id": str(server_id()),
        "debezium.source.database.include.list": db,
        "debezium.source.table.include.list": f"{db}.bench,{db}.ready",
        "debezium.source.schema.history.internal.file.filename": str(history),
    }


def prime_tideflow(tf: Tideflow, b: Binlog, prefix: str) -> dict[str, Any]:
    """Tideflow's pipeline, positioned before the workload and paused."""
    run = tf.create("mariadb", tideflow_config(b.db), prefix)
    problem = b.mark_until(
        f"{prefix}.{b.db}.ready", "tideflow", lambda: tf.server is not None, timeout=120
    )
    assert not problem, problem
    tf.pause(run)
    return run


def prime_debezium(dbz: Debezium, b: Binlog, prefix: str, offsets: Path, history: Path) -> str:
    """A Debezium JVM that records its schema history and an offset before the workload,
    then stops. Returns "" or what went wrong."""
    props = debezium_props(dbz.common(prefix, "no_data", offsets), b.db, history)
    # Unmeasured run: offsets flushed after every batch, so the marker's is on disk at once.
    props["debezium.source.offset.flush.interval.ms"] = "0"
    dbz.start(props)
    try:
        problem = b.mark_until(f"{prefix}.{b.db}.ready", "debezium", dbz.alive, timeout=600)
        if problem:
            return f"{problem}; log: {dbz.log_tail(5)}"
        deadline = time.monotonic() + 60
        while not (offsets.exists() and offsets.stat().st_size > 0):
            if time.monotonic() > deadline:
                return "no offset flushed after the marker"
            time.sleep(0.2)
        return ""
    finally:
        dbz.stop()


def _tag() -> str:
    return str(time.time_ns() % 10**10)


def _tideflow(ctx: Context, b: Binlog, run: dict[str, Any], prefix: str) -> dict[str, Any]:
    tf = ctx.tideflow
    sampler = Sampler(tf.pid)
    watch = BinlogWatch()
    started = time.time()
    tf.resume(run)
    problem = wait_topic(
        f"{prefix}.{b.db}.bench",
        b.events + b.expected["d"],  # a tombstone follows each delete
        lambda: tf.server is not None and tf.server._healthy(),
        sampler=sampler,
    )
    rss, _ = sampler.stop()
    read_from = watch.stop()
    return {
        "problem": problem,
        "started": started,
        "cpu_s": sampler.steady_cpu(),
        "rss_mb": rss,
        # A source that kept its binlog connection while paused shows no new dump thread:
        # then the clock runs from the resume request.
        "read_from": read_from or started,
        "clock_from": "binlog dump thread" if read_from else "resume request",
    }


def _debezium(
    ctx: Context, b: Binlog, prefix: str, offsets: Path, history: Path, primed: str
) -> dict[str, Any]:
    dbz = ctx.debezium
    started = time.time()
    if primed:
        return {
            "problem": primed,
            "started": started,
            "cpu_s": 0.0,
            "rss_mb": 0.0,
            "clock_from": None,
        }
    watch = BinlogWatch()
    dbz.start(debezium_props(dbz.common(prefix, "no_data", offsets), b.db, history))
    sampler = Sampler(dbz.pid)
    problem = wait_topic(
        f"{prefix}.{b.db}.bench", b.events + b.expected["d"], dbz.alive, sampler=sampler
    )
    rss, _ = sampler.stop()
    read_from = watch.stop()
    if problem:
        problem += f"; log: {dbz.log_tail(5)}"
    dbz.stop()
    return {
        "problem": problem,
        "started": started,
        "cpu_s": sampler.steady_cpu(),
        "rss_mb": rss,
        "read_from": read_from,
        "clock_from": "binlog dump thread",
    }


def streaming(
    ctx: Context, rows: int, per_tx: int, reps: int, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """``reps`` repetitions of the binlog workload; the contenders' order alternates."""
    runs: list[dict[str, Any]] = []
    for rep in range(reps):
        order = ["tideflow", "debezium"] if rep % 2 == 0 else ["debezium", "tideflow"]
        with database() as b:
            prefix = {"tideflow": f"cmpmtf{_tag()}", "debezium": f"cmpmdbz{_tag()}"}
            for name in order:
                for table in ("bench", "ready"):
                    b.topics.append(f"{prefix[name]}.{b.db}.{table}")
                    verify.create_topic(b.topics[-1])
            offsets = ctx.work / f"offsets-{prefix['debezium']}.dat"
            history = ctx.work / f"history-{prefix['debezium']}.dat"
            tf_run: dict[str, Any] | None = prime_tideflow(ctx.tideflow, b, prefix["tideflow"])
            try:
                primed = prime_debezium(ctx.debezium, b, prefix["debezium"], offsets, history)
                b.expected = write(b.db, rows, per_tx)
                source = source_state(b.db)
                log(f"  rep {rep + 1}/{reps}: {b.events:,} binlog events {b.expected}")
                for name in order:
                    if name == "tideflow":
                        assert tf_run is not None
                        m = _tideflow(ctx, b, tf_run, prefix[name])
                        ctx.tideflow.stop(tf_run)
                        tf_run = None
                    else:
                        m = _debezium(ctx, b, prefix[name], offsets, history, primed)
                    result = _finish(
                        f"{prefix[name]}.{b.db}.bench",
                        COLUMNS,
                        source,
                        b.expected,
                        events=b.events,
                        problem=m["problem"],
                        started=m["started"],
                        cpu_s=m["cpu_s"],
                        rss_mb=m["rss_mb"],
                        read_from=m.get("read_from"),
                    )
                    runs.append(
                        {"contender": name, "rep": rep, "clock_from": m.get("clock_from"), **result}
                    )
                    log(
                        f"    {name:<12} {result['events_per_s'] or 0:>9,} events/s  "
                        f"wall {result.get('wall_s')} s  cpu {result['cpu_us_per_event']} "
                        f"µs/event  ok={result['ok']} ({result['detail'][:120]})"
                    )
            finally:
                if tf_run is not None:
                    ctx.tideflow.stop(tf_run)
                ctx.debezium.stop()
    return runs
