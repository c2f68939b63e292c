"""MariaDB → Postgres through a live ``tideflow serve`` (API + embedded worker): two figures.

1. Streaming throughput: the source is paused through the API, ``--rows`` rows are inserted
   (``--txn`` rows per transaction), the source is resumed and the clock runs from the resume
   until every row is in Postgres (rows/s; includes re-opening the binlog reader).
2. End-to-end latency at a steady ``--rate`` rows/s for ``--seconds``: each row carries its
   creation time (``UTC_TIMESTAMP(6)`` on MariaDB) and the destination table an ``arrived``
   column defaulting to ``clock_timestamp()``; p50/p99/max of ``arrived - created``.

Services from ``make services`` (same host, so both clocks are the same clock).

    .venv/bin/python -m bench.mysql_bench --rows 500000 --rate 5000 --seconds 30
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import psycopg
from tests.support import api, mysql, pg
from tests.support.server import Server, wait_until

COLUMNS = "id, account, amount, status, note, created"


def insert_rows(db: str, first: int, count: int, txn: int) -> None:
    with mysql.connect(autocommit=False) as conn, conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        for start in range(first, first + count, txn):
            ids = range(start, min(start + txn, first + count))
            cur.execute(
                f"INSERT INTO `{db}`.bench ({COLUMNS}) VALUES "
                + ",".join(
                    f"({i}, {i % 1000}, {i % 100000}.25, 'new', 'note {i}', UTC_TIMESTAMP(6))"
                    for i in ids
                )
            )
            conn.commit()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def count(dst: str) -> int:
    with psycopg.connect(pg.dsn(dst)) as conn:
        row = conn.execute("SELECT count(*) FROM public.bench").fetchone()
    return int(row[0]) if row else 0


def steady(db: str, first: int, rate: int, seconds: float, per_txn: int = 50) -> int:
    """Insert ``rate`` rows/s in ``per_txn``-row transactions for ``seconds``; rows written."""
    interval = per_txn / rate
    written = 0
    with mysql.connect(autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        started = time.monotonic()
        while (now := time.monotonic()) - started < seconds:
            due = started + (written // per_txn) * interval
            if now < due:
                time.sleep(due - now)
            ids = range(first + written, first + written + per_txn)
            cur.execute(
                f"INSERT INTO `{db}`.bench ({COLUMNS}) VALUES "
                + ",".join(f"({i}, 1, 1.00, 'lat', 'n', UTC_TIMESTAMP(6))" for i in ids)
            )
            written += per_txn
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--txn", type=int, default=5_000)
    parser.add_argument("--rate", type=int, default=5_000)
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        mysql.temp_database("tfbench") as db,
        pg.temp_database("tfbench") as dst,
    ):
        mysql.execute(
            f"CREATE TABLE `{db}`.bench (id BIGINT PRIMARY KEY, account INT NOT NULL, "
            "amount DECIMAL(12,2), status VARCHAR(16), note VARCHAR(64), created DATETIME(6))"
        )
        server = Server(Path(tmp) / "srv").start(timeout=120)  # a loaded machine starts slowly
        try:
            with server.client() as c:
                source = api.create(
                    c,
                    "/sources",
                    {
                        "name": api.unique("bench"),
                        "connector": "mariadb",
                        "config": mysql.source_config(
                            **{"table.include.list.user.defined": f"{db}.bench"}
                        ),
                    },
                )
                dest = api.create(
                    c,
                    "/destinations",
                    {
                        "name": api.unique("pg"),
                        "connector": "postgresql",
                        "config": api.pg_destination_config(dst),
                    },
                )
                api.create_pipeline(c, source, dest)
                api.wait_status(c, "sources", source["id"], "Active")
                insert_rows(db, 0, 1, 1)  # the destination creates its table
                wait_until(lambda: count(dst) == 1, 60, what="first row")
                with psycopg.connect(pg.dsn(dst), autocommit=True) as conn:
                    conn.execute(
                        "ALTER TABLE public.bench ADD COLUMN arrived timestamptz "
                        "DEFAULT clock_timestamp()"
                    )

                assert c.post(f"/sources/{source['id']}/pause").status_code == 200
                api.wait_status(c, "sources", source["id"], "Paused")
                insert_rows(db, 1, args.rows, args.txn)
                assert server.proc is not None
                pid = server.proc.pid
                cpu_before = cpu_seconds(pid)
                assert c.post(f"/sources/{source['id']}/resume").status_code == 200
                started = time.monotonic()
                wait_until(lambda: count(dst) == args.rows + 1, 1800, 0.2, "all rows")
                elapsed = time.monotonic() - started
                cpu = cpu_seconds(pid) - cpu_before
                # The machine may be shared: CPU per row is the figure that does not depend
                # on what else runs; rows/s is what this run saw.
                print(
                    f"throughput: {args.rows} rows in {elapsed:.1f} s = "
                    f"{args.rows / elapsed:,.0f} rows/s (target >= 40,000); server CPU "
                    f"{cpu:.1f} s = {cpu / args.rows * 1e6:.1f} µs/row "
                    f"(= {args.rows / cpu:,.0f} rows/s per core)"
                )

                first = args.rows + 1
                cpu_before = cpu_seconds(pid)
                written = steady(db, first, args.rate, args.seconds)
                wait_until(lambda: count(dst) == first + written, 300, 0.2, "steady rows")
                steady_cpu = cpu_seconds(pid) - cpu_before
                with psycopg.connect(pg.dsn(dst)) as conn:
                    row = conn.execute(
                        "SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY l), "
                        "max(l) FROM (SELECT extract(epoch FROM arrived - "
                        "(created AT TIME ZONE 'UTC')) * 1000 AS l FROM public.bench "
                        "WHERE id >= %s) x",
                        (first,),
                    ).fetchone()
                assert row is not None
                (p50, p99), worst = row
                print(
                    f"latency at {args.rate} rows/s for {args.seconds:.0f} s ({written} rows): "
                    f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {worst:.0f} ms (target p99 <= 250); "
                    f"server CPU {steady_cpu / written * 1e6:.1f} µs/row"
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
