"""Snapshot throughput: Tideflow's incremental snapshot vs ``pg_dump --data-only | psql``.

A ``--rows``-row table (default 5,000,000) is copied from Postgres to an empty Postgres
database twice:

1. Tideflow: a live ``tideflow serve`` (API + embedded worker), a source on the table, a
   Postgres destination; ``POST /sources/snapshot``; the clock runs until every row is in the
   destination and the snapshot is completed.
2. ``pg_dump --data-only -t T src | psql dst`` into a database holding only the table's
   definition (``pg_dump --schema-only``), timed the same way.

Printed for each: wall time, rows/s, and source-side CPU seconds — the CPU time of the Postgres
server processes serving the copy (sampled from /proc every 0.2 s; a process that exits keeps
its last sample), which is what a production database pays. Here source and destination
share one Postgres server, so both CPU figures include the destination's writes too.
Services from ``make services``. 1,000,000 rows on the shared 2-core dev box (2026-11-22):
pg_dump | psql 2.8 s (356k rows/s, 2.5 Postgres CPU s); Tideflow 28.0 s (36k rows/s, 17.2
Postgres CPU s). The 5M default was not run there (the shared server was being restarted).

    .venv/bin/python -m bench.snapshot_bench --rows 5000000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg
from tests.support import api, pg
from tests.support.server import Server, wait_until

TABLE = """
CREATE TABLE public.snap (
    id bigint PRIMARY KEY,
    account int NOT NULL,
    amount numeric(12, 2),
    status text,
    note text,
    created timestamptz
)
"""
_TICK = os.sysconf("SC_CLK_TCK")


class PostgresCpu:
    """CPU seconds used by postgres server processes while running (sampled)."""

    def __init__(self) -> None:
        self._start = self._sample()
        self._last: dict[int, float] = dict(self._start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    @staticmethod
    def _sample() -> dict[int, float]:
        out: dict[int, float] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            if name != "postgres":
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            out[int(entry.name)] = (int(fields[11]) + int(fields[12])) / _TICK
        return out

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self._last.update(self._sample())

    def seconds(self) -> float:
        self._stop.set()
        self._thread.join()
        self._last.update(self._sample())
        return sum(v - self._start.get(pid, 0.0) for pid, v in self._last.items())


def fill(db: str, rows: int) -> None:
    with psycopg.connect(pg.dsn(db), autocommit=True) as conn:
        conn.execute(TABLE)
        conn.execute(
            "INSERT INTO public.snap SELECT g, g %% 1000, (g %% 100000) + 0.25, 'new', "
            "'note ' || g, timestamptz '2024-01-01' + g * interval '1 second' "
            "FROM generate_series(1, %s) g",
            (rows,),
        )
        conn.execute("VACUUM ANALYZE public.snap")


def count(db: str) -> int:
    try:
        with psycopg.connect(pg.dsn(db)) as conn:
            row = conn.execute("SELECT count(*) FROM public.snap").fetchone()
            return int(row[0]) if row else 0
    except psycopg.Error:
        return 0


def tideflow_run(src: str, rows: int, chunk: int, parallelism: int) -> tuple[float, float]:
    with pg.temp_database("snapdst") as dst, tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "srv", worker=True)
        server.start()
        try:
            with server.client() as c:
                extra = {"snapshot.chunk.size": chunk, "snapshot.parallelism": parallelism}
                source = api.create(
                    c,
                    "/sources",
                    {
                        "name": api.unique("snapsrc"),
                        "connector": "postgresql",
                        "config": api.pg_source_config(src, "public.snap", **extra),
                    },
                )
                dest = api.create(
                    c,
                    "/destinations",
                    {
                        "name": api.unique("snapdst"),
                        "connector": "postgresql",
                        "config": api.pg_destination_config(dst),
                    },
                )
                pipe = api.create_pipeline(c, source, dest)
                api.wait_status(c, "pipelines", pipe["id"], "Active")
                api.wait_status(c, "sources", source["id"], "Active")
                cpu = PostgresCpu()
                began = time.monotonic()
                r = c.post("/sources/snapshot", json={"source_id": source["id"]})
                assert r.status_code == 202, r.text

                def done() -> bool:
                    topics = c.get(f"/sources/{source['id']}/snapshot").json()["topics"]
                    return bool(topics) and topics[0]["status"] == "completed"

                wait_until(done, 3600, interval=0.5, what="snapshot completed")
                wait_until(lambda: count(dst) == rows, 600, interval=0.5, what="rows copied")
                wall = time.monotonic() - began
                return wall, cpu.seconds()
        finally:
            server.stop()


def pg_dump_run(src: str) -> tuple[float, float]:
    env = {**os.environ, "PGPASSWORD": pg.PASSWORD}
    conn_args = ["-h", pg.HOST, "-p", str(pg.PORT), "-U", pg.USER]
    with pg.temp_database("dumpdst") as dst:
        schema = subprocess.run(
            ["pg_dump", *conn_args, "--schema-only", "-t", "public.snap", src],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        subprocess.run(
            ["psql", *conn_args, "-q", "-v", "ON_ERROR_STOP=1", dst],
            input=schema,
            env=env,
            text=True,
            check=True,
            capture_output=True,
        )
        cpu = PostgresCpu()
        began = time.monotonic()
        subprocess.run(
            f"pg_dump {' '.join(conn_args)} --data-only -t public.snap {src} | "
            f"psql {' '.join(conn_args)} -q -v ON_ERROR_STOP=1 {dst}",
            shell=True,
            env=env,
            check=True,
            capture_output=True,
        )
        wall = time.monotonic() - began
        return wall, cpu.seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--chunk", type=int, default=10_000)
    parser.add_argument("--parallelism", type=int, default=2)
    args = parser.parse_args()
    with pg.temp_database("snapsrc") as src:
        print(f"filling {args.rows:,} rows ...", flush=True)
        fill(src, args.rows)
        results = {
            "pg_dump | psql": pg_dump_run(src),
            f"tideflow snapshot (chunk {args.chunk}, parallelism {args.parallelism})": (
                tideflow_run(src, args.rows, args.chunk, args.parallelism)
            ),
        }
    print(f"\n{'method':<48} {'wall s':>9} {'rows/s':>11} {'source CPU s':>13}")
    for name, (wall, cpu) in results.items():
        print(f"{name:<48} {wall:>9.1f} {args.rows / wall:>11,.0f} {cpu:>13.1f}")


if __name__ == "__main__":
    main()
