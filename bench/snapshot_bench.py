"""Snapshot throughput: Tideflow's incremental snapshot vs ``pg_dump --data-only | psql``.

A ``--rows``-row table (default 5,000,000) is copied from Postgres to an empty Postgres
database, alternately (``--repeat`` pairs, so both see the same background load on a shared
machine) by:

1. ``pg_dump --data-only -t T src | psql dst`` into a database holding only the table's
   definition (``pg_dump --schema-only``);
2. Tideflow: a live ``tideflow serve`` (API + embedded worker), a source on the table, a
   Postgres destination with its defaults; ``POST /sources/snapshot``; the clock runs until
   the server logs the snapshot completed (recorded only once the rows are durable; they are
   counted then).

Printed for each: wall time, rows/s, CPU seconds of the Postgres backends serving the source
database (walsender included) and the destination database (sampled from /proc every 0.2 s;
a backend that exits keeps its last sample), the seconds the destination backends were ready
to run but waited for a CPU (``/proc/<pid>/schedstat``: on a machine whose cores are all busy
this, not CPU, separates the contenders), and the client's CPU (pg_dump + psql, or Tideflow's
process); then the wall-time ratio of each pair.

Where the destinations live (printed with the results):

- ``--dest private`` (the default): both contenders load into a second Postgres 15 server on
  this machine, started for the run (:mod:`tests.support.pgcluster`, ``fsync`` and
  ``synchronous_commit`` on, the shared server's memory settings). This is how production
  looks, and the only fair comparison: on one server, Tideflow's replication slot would make
  the source's walsender decode every byte of WAL the destination load writes, a cost
  ``pg_dump | psql`` (no slot) never pays and no real deployment has.
- ``--dest shared``: the destinations are databases of the source's server.
- ``--dest-port P``: an already running server on port P (user/password as the shared one).

``SNAPSHOT_BENCH_BACKENDS=1`` prints CPU per backend. Figures: ``docs/benchmarks.md``,
"Snapshots".

    .venv/bin/python -m bench.snapshot_bench --rows 5000000 --repeat 2
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from tests.support import api, pg, pgcluster
from tests.support.server import Server, wait_until

from tideflow.connectors.sources.postgres.config import PostgresSourceConfig

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


class BackendCpu:
    """CPU seconds of the Postgres backends serving given databases (sampled from /proc).

    Backends are found in ``pg_stat_activity`` every 0.2 s (walsenders included) and their
    ``utime + stime`` read then; a backend that exits keeps its last sample. The sampling
    connection itself serves the ``postgres`` database and is not counted. Other users of the
    shared server are not counted either, unlike a whole-server figure.
    """

    def __init__(self, databases: list[str], port: int = pg.PORT) -> None:
        self.databases = databases
        self._conn = psycopg.connect(_dsn("postgres", port), autocommit=True)
        self._first: dict[int, tuple[float, float]] = {}
        self._last: dict[int, tuple[float, float]] = {}
        self._db: dict[int, str] = {}
        self.what: dict[int, str] = {}
        self._stop = threading.Event()
        self._sample()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        rows = self._conn.execute(
            "SELECT pid, datname, backend_type || ' ' || application_name"
            " FROM pg_stat_activity WHERE datname = ANY(%s)",
            (self.databases,),
        ).fetchall()
        for pid, db, what in rows:
            cpu, waited = _proc_cpu(pid), _run_queue_wait(pid)
            if cpu is None or waited is None:
                continue
            used = (cpu, waited)
            self._db[pid] = db
            self.what[pid] = what
            self._first.setdefault(pid, used)
            self._last[pid] = used

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def seconds(self) -> dict[str, tuple[float, float]]:
        """(CPU seconds, seconds waiting for a CPU) per database since the start (backends
        already running at the start count from then)."""
        self._stop.set()
        self._thread.join()
        self._sample()
        self._conn.close()
        cpu = dict.fromkeys(self.databases, 0.0)
        waited = dict.fromkeys(self.databases, 0.0)
        for pid, (used, wait) in self._last.items():
            first_used, first_wait = self._first[pid]
            cpu[self._db[pid]] += used - first_used
            waited[self._db[pid]] += wait - first_wait
            if os.environ.get("SNAPSHOT_BENCH_BACKENDS"):
                print(
                    f"  {self._db[pid]:<28} {self.what[pid]:<40} {used - first_used:.2f}"
                    f" (waited {wait - first_wait:.2f})"
                )
        return {db: (cpu[db], waited[db]) for db in self.databases}


def _proc_cpu(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _run_queue_wait(pid: int) -> float | None:
    """Seconds ``pid`` was runnable but not running (``schedstat``'s second field, in ns)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class Run:
    wall: float
    source_cpu: float  # backends of the source database
    dest_cpu: float  # backends of the destination database
    client_cpu: float  # tideflow's process, or pg_dump + psql
    dest_wait: float = 0.0  # destination backends runnable but waiting for a CPU


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


def _dsn(db: str, port: int) -> str:
    return pg.dsn(db).replace(f"port={pg.PORT}", f"port={port}")


@contextlib.contextmanager
def dest_database(prefix: str, port: int) -> Iterator[str]:
    """An empty database on the destination server (the source's server by default)."""
    if port == pg.PORT:
        with pg.temp_database(prefix) as name:
            yield name
        return
    name = f"{prefix}_{secrets.token_hex(5)}"
    with psycopg.connect(_dsn("postgres", port), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(_dsn("postgres", port), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def count(db: str, port: int = pg.PORT) -> int:
    try:
        with psycopg.connect(_dsn(db, port)) as conn:
            row = conn.execute("SELECT count(*) FROM public.snap").fetchone()
            return int(row[0]) if row else 0
    except psycopg.Error:
        return 0


def tideflow_run(
    src: str,
    rows: int,
    chunk: int | None,
    parallelism: int,
    log_dir: Path | None,
    port: int,
    load_connections: int | None = None,
) -> Run:
    with dest_database("snapdst", port) as dst, tempfile.TemporaryDirectory() as tmp:
        server = Server(Path(tmp) / "srv", worker=True)
        server.start()
        try:
            with server.client() as c:
                extra = {"snapshot.parallelism": parallelism}
                if chunk is not None:
                    extra["snapshot.chunk.size"] = chunk
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
                        "config": {
                            **api.pg_destination_config(dst, port=port),
                            **(
                                {"snapshot.load.connections": load_connections}
                                if load_connections is not None
                                else {}
                            ),
                        },
                    },
                )
                pipe = api.create_pipeline(c, source, dest)
                api.wait_status(c, "pipelines", pipe["id"], "Active")
                api.wait_status(c, "sources", source["id"], "Active")
                assert server.proc is not None
                cpu, dst_cpu = BackendCpu([src], pg.PORT), BackendCpu([dst], port)
                client = _proc_cpu(server.proc.pid) or 0.0
                began = time.monotonic()
                r = c.post("/sources/snapshot", json={"source_id": source["id"]})
                assert r.status_code == 202, r.text

                # The server logs the completion; reading its log every 0.1 s costs nothing,
                # where polling the API would charge Tideflow's CPU for every request.
                log = server.log_path
                assert log is not None
                wait_until(
                    lambda: b"snapshot of public.snap completed" in log.read_bytes(),
                    3600,
                    interval=0.1,
                    what="snapshot completed",
                )
                wall = time.monotonic() - began
                # Completion is recorded only after the rows are durable (invariant 1).
                assert count(dst, port) == rows, "snapshot completed without every row"
                client = (_proc_cpu(server.proc.pid) or 0.0) - client
                (dst_used, dst_wait) = dst_cpu.seconds()[dst]
                return Run(wall, cpu.seconds()[src][0], dst_used, client, dst_wait)
        finally:
            server.stop()
            if log_dir is not None and server.log_path is not None:
                log_dir.mkdir(parents=True, exist_ok=True)
                shutil.copy(server.log_path, log_dir / f"tideflow-{int(time.time())}.log")


def pg_dump_run(src: str, port: int) -> Run:
    env = {**os.environ, "PGPASSWORD": pg.PASSWORD}
    conn_args = ["-h", pg.HOST, "-p", str(pg.PORT), "-U", pg.USER]
    dst_args = ["-h", pg.HOST, "-p", str(port), "-U", pg.USER]
    with dest_database("dumpdst", port) as dst:
        schema = subprocess.run(
            ["pg_dump", *conn_args, "--schema-only", "-t", "public.snap", src],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        subprocess.run(
            ["psql", *dst_args, "-q", "-v", "ON_ERROR_STOP=1", dst],
            input=schema,
            env=env,
            text=True,
            check=True,
            capture_output=True,
        )
        cpu, dst_cpu = BackendCpu([src], pg.PORT), BackendCpu([dst], port)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.monotonic()
        subprocess.run(
            f"pg_dump {' '.join(conn_args)} --data-only -t public.snap {src} | "
            f"psql {' '.join(dst_args)} -q -v ON_ERROR_STOP=1 {dst}",
            shell=True,
            env=env,
            check=True,
            capture_output=True,
        )
        wall = time.monotonic() - began
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        client = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
        (dst_used, dst_wait) = dst_cpu.seconds()[dst]
        return Run(wall, cpu.seconds()[src][0], dst_used, client, dst_wait)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--chunk", type=int, help="snapshot.chunk.size (default: the source's)")
    parser.add_argument("--parallelism", type=int, default=2)
    parser.add_argument(
        "--load-connections",
        type=int,
        help="the destination's snapshot.load.connections (default: the destination's)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="alternate pg_dump | psql and Tideflow N times"
    )
    parser.add_argument("--log-dir", type=Path, help="keep Tideflow's server logs here")
    parser.add_argument(
        "--dest",
        choices=("private", "shared"),
        default="private",
        help="destinations on a second server started for the run (default) or on the source's",
    )
    parser.add_argument(
        "--dest-port", type=int, help="destinations on this already running Postgres server"
    )
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if args.dest_port is not None:
            port, where = args.dest_port, f"the server on port {args.dest_port}"
        elif args.dest == "private":
            port = stack.enter_context(pgcluster.throwaway_cluster(**DEST_SETTINGS))
            where = f"a second Postgres server on this machine (port {port}, started for the run)"
        else:
            port, where = pg.PORT, "the source's own server"
        _compare(args, port, where)


# The shared server's settings that matter for a bulk load; durability as in production.
DEST_SETTINGS = {
    "fsync": "on",
    "synchronous_commit": "on",
    "shared_buffers": "256MB",
    "max_wal_size": "1GB",
    "max_connections": "50",
}


def _compare(args: argparse.Namespace, port: int, where: str) -> None:
    default = PostgresSourceConfig.model_fields["snapshot_chunk_size"].default
    chunk = f"default {default:,}" if args.chunk is None else f"{args.chunk:,}"
    tideflow = f"tideflow (chunk {chunk}, parallelism {args.parallelism})"
    if args.load_connections is not None:
        load = args.load_connections
        tideflow = f"tideflow (chunk {chunk}, par. {args.parallelism}, load {load})"
    runs: list[tuple[str, Run]] = []
    with pg.temp_database("snapsrc") as src:
        print(f"filling {args.rows:,} rows ...", flush=True)
        fill(src, args.rows)
        for i in range(args.repeat):
            # Alternated on a shared machine, so both see the same background load.
            runs.append(("pg_dump | psql", pg_dump_run(src, port)))
            run = tideflow_run(
                src,
                args.rows,
                args.chunk,
                args.parallelism,
                args.log_dir,
                port,
                args.load_connections,
            )
            runs.append((tideflow, run))
            ratio = runs[-1][1].wall / runs[-2][1].wall
            load = " ".join(f"{x:.1f}" for x in os.getloadavg())
            print(f"pair {i + 1}: ratio {ratio:.2f} (load average {load})", flush=True)
    print(f"\nsource: the shared server (port {pg.PORT}); destinations: {where}")
    print(
        f"{'run':<4} {'method':<48} {'wall s':>7} {'rows/s':>10} "
        f"{'src CPU s':>9} {'dst CPU s':>9} {'dst wait s':>10} {'client CPU s':>12}"
    )
    for i, (name, run) in enumerate(runs):
        print(f"{i // 2 + 1:<4} {_line(name, run, args.rows)}")
    ratios = [runs[i + 1][1].wall / runs[i][1].wall for i in range(0, len(runs), 2)]
    print(
        "\nwall time ratio Tideflow / pg_dump|psql per pair: "
        + ", ".join(f"{r:.2f}" for r in ratios)
        + f" (median {statistics.median(ratios):.2f})"
    )


def _line(name: str, run: Run, rows: int) -> str:
    return (
        f"{name:<48} {run.wall:>7.1f} {rows / run.wall:>10,.0f} {run.source_cpu:>9.1f} "
        f"{run.dest_cpu:>9.1f} {run.dest_wait:>10.1f} {run.client_cpu:>12.1f}"
    )


if __name__ == "__main__":
    main()
