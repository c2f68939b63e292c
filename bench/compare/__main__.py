"""``python -m bench.compare [--quick] [--only ...]``: the side-by-side run of issue 9.

Writes ``bench/results/<date>-compare[-quick].json`` (with the top-level ``summary``), the
Markdown table next to it (``.md``) and a py-spy profile of Tideflow's streaming hot path
(``-tideflow.speedscope.json``, open it in https://www.speedscope.app).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from tests.support import pg, pgcluster

from bench.compare import binlog, measure, report, workloads
from bench.compare.contenders import DEBEZIUM_SNAPSHOT_TUNING, DEBEZIUM_TUNING, Debezium, Tideflow
from bench.run import machine

RESULTS = Path(__file__).resolve().parents[1] / "results"
WORKLOADS = ("large_tx", "latency", "single_row_tx", "mariadb", "snapshot", "peak_rss", "profile")


def log(line: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S} load {os.getloadavg()[0]:.1f}] {line}", flush=True)


def describe() -> dict[str, Any]:
    info = machine()
    with open("/proc/cpuinfo") as f:
        model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    info["cpu_model"] = model
    with psycopg.connect(pg.dsn()) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        info["postgres"] = row[0] if row else ""
    kafka = sorted(Path("/var/cache/tideflow").glob("kafka-*"))
    info["kafka"] = kafka[-1].name.removeprefix("kafka-") if kafka else ""
    # Tideflow runs from this working tree: record the commit and any uncommitted changes to
    # src/ (other work in progress changes what is measured).
    git = ["git", "-C", str(RESULTS.parents[1])]
    info["tideflow_commit"] = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    info["tideflow_uncommitted_src"] = subprocess.run(
        [*git, "diff", "--name-only", "HEAD", "--", "src"], capture_output=True, text=True
    ).stdout.split()
    return info


# The shared server's settings (scripts/services/postgres.sh) for the private cluster, with
# its durability: the figures must not come from a faster, unsafe configuration.
PRIVATE_POSTGRES = {
    "wal_level": "logical",
    "max_replication_slots": "64",
    "max_wal_senders": "64",
    "fsync": "on",
    "synchronous_commit": "on",
    "shared_buffers": "256MB",
    "max_wal_size": "1GB",
    "max_connections": "100",
}


@contextlib.contextmanager
def postgres(where: str) -> Iterator[str]:
    """Point ``tests.support.pg`` (every DSN the harness and the contenders use) at a private
    cluster started for the run, or leave it on the shared server. On the shared server other
    people's test sessions drop replication slots they take for leaks (an inactive copy of the
    template slot while Debezium's JVM starts), terminate walsenders and restart the server,
    and every walsender decodes their WAL too."""
    if where == "shared":
        yield f"the shared server (port {pg.PORT})"
        return
    shared = pg.PORT
    with pgcluster.throwaway_cluster(**PRIVATE_POSTGRES) as port:
        pg.PORT = port
        try:
            yield f"a private Postgres 15 cluster started for the run (port {port})"
        finally:
            pg.PORT = shared


def main() -> None:
    # SIGTERM unwinds like Ctrl-C, so databases, slots and topics are dropped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--postgres",
        choices=("private", "shared"),
        default="private",
        help="Postgres for every contender: a cluster started for the run (default), or the "
        "shared server of make services",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: every workload small, one repetition"
    )
    parser.add_argument(
        "--only", default=",".join(WORKLOADS), help="subset of " + ",".join(WORKLOADS)
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="large-transaction stream")
    parser.add_argument("--single-tx", type=int, default=200_000, help="single-row transactions")
    parser.add_argument(
        "--reps",
        type=int,
        default=3,
        help="repetitions of the streaming, latency and binlog workloads",
    )
    parser.add_argument("--rate", type=int, default=5_000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument(
        "--warm-rows", type=int, default=100_000, help="unmeasured burst before the latency run"
    )
    parser.add_argument(
        "--mariadb-rows", type=int, default=200_000, help="binlog stream: inserted rows"
    )
    parser.add_argument("--mariadb-tx", type=int, default=5_000, help="rows per transaction")
    parser.add_argument("--snapshot-rows", type=int, default=5_000_000)
    parser.add_argument(
        "--snapshot-debezium-rows",
        type=int,
        default=500_000,
        help="rows Debezium's initial snapshot copies (extrapolated to --snapshot-rows)",
    )
    parser.add_argument("--snapshot-reps", type=int, default=1)
    parser.add_argument("--big-tx", type=int, default=2_000_000)
    parser.add_argument(
        "--stem", help="results file name without .json (default <date>-compare[-quick])"
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the runs already in the results file (workloads run again are replaced)",
    )
    args = parser.parse_args()
    if args.quick:
        args.rows, args.single_tx, args.reps, args.seconds = 100_000, 60_000, 1, 10
        args.snapshot_rows, args.snapshot_debezium_rows = 200_000, 100_000
        args.big_tx, args.warm_rows, args.mariadb_rows = 200_000, 10_000, 50_000
    only = set(args.only.split(","))
    suffix = "-compare-quick" if args.quick else "-compare"
    stem = args.stem or f"{datetime.now(UTC):%Y-%m-%d}{suffix}"
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{stem}.json"
    base = Path(os.environ.get("TIDEFLOW_BENCH_DIR", tempfile.gettempdir())) / "tideflow-compare"
    work = base / str(time.time_ns())
    work.mkdir(parents=True)

    with postgres(args.postgres) as where:
        log(f"Postgres: {where}")
        run(args, only, stem, out, work, where)


def run(
    args: argparse.Namespace, only: set[str], stem: str, out: Path, work: Path, where: str
) -> None:
    log("fetching Debezium Server (cached after the first run) and starting tideflow serve")
    ctx = measure.Context(tideflow=Tideflow(work), debezium=Debezium(work), work=work)
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(),
        "machine": describe(),
        "postgres": where,
        "load_average": {"start": os.getloadavg()},
        "versions": {"debezium_server": ctx.debezium.version},
        "args": vars(args),
        "settings": {
            "sink": "Kafka 127.0.0.1:9092, one-partition topic per run created by the harness "
            "(LogAppendTime), JSON Debezium envelope without schemas, acks=all, idempotent "
            "producer, lz4",
            "debezium": {
                **DEBEZIUM_TUNING,
                "debezium.source.decimal.handling.mode": "string",
                "debezium.source.offset.flush.interval.ms": "default (60000)",
                "snapshot": DEBEZIUM_SNAPSHOT_TUNING,
                "mariadb": {
                    **binlog.DEBEZIUM_MARIADB,
                    "debezium.source.database.server.id": "random in 10000..99999 per run",
                    "debezium.source.snapshot.mode": "no_data (priming run, then resumed "
                    "from its offsets file)",
                },
                "jvm": "java -cp <runner>:conf:lib/* io.debezium.server.Main (run.sh, no "
                "JAVA_OPTS: default heap sizing)",
            },
            "tideflow": "tideflow serve with the embedded worker; Kafka destination defaults "
            "(linger.ms=5, lz4, acks=all, idempotent); snapshot.chunk.size=10000, "
            "snapshot.parallelism=2",
            "recvlogical": "pg_recvlogical --start -o proto_version=1 -o publication_names=<pub> "
            "-E <end lsn> -f /dev/null",
        },
        "runs": {},
    }
    if args.merge and out.exists():
        earlier = json.loads(out.read_text())
        results["runs"] = earlier["runs"]
        results["earlier_sessions"] = [
            *earlier.get("earlier_sessions", []),
            {k: earlier.get(k) for k in ("date", "load_average", "args")},
        ]

    began = mark = time.monotonic()

    def done(workload: str) -> None:
        """Record how long ``workload`` took (the full run's time budget) and save."""
        nonlocal mark
        results.setdefault("duration_s", {})[workload] = round(time.monotonic() - mark)
        mark = time.monotonic()
        save()

    def save() -> None:
        results.setdefault("duration_s", {})["total"] = round(time.monotonic() - began)
        results["load_average"]["end"] = os.getloadavg()
        results["summary"] = report.summarize(results["runs"])
        out.write_text(json.dumps(results, indent=2, default=str) + "\n")
        (RESULTS / f"{stem}.md").write_text(report.markdown(results))

    contenders = ["tideflow", "debezium", "recvlogical"]
    try:
        if "large_tx" in only:
            log(f"streaming: {args.rows:,} rows in 100k-row transactions, {args.reps} reps")
            results["runs"]["large_tx"] = measure.streaming(
                ctx, workloads.bulk(args.rows), args.reps, contenders, log
            )
            done("large_tx")
        if "latency" in only:
            log(f"latency: {args.rate:,} rows/s for {args.seconds:.0f} s, {args.reps} reps")
            results["runs"]["latency"] = []
            for rep in range(args.reps):
                for name in ("tideflow", "debezium")[:: 1 if rep % 2 == 0 else -1]:
                    run = measure.latency(ctx, name, args.rate, args.seconds, log, args.warm_rows)
                    results["runs"]["latency"].append({**run, "rep": rep})
                save()
            done("latency")
        if "single_row_tx" in only:
            log(f"streaming: {args.single_tx:,} single-row transactions (6:3:1 I/U/D)")
            results["runs"]["single_row_tx"] = measure.streaming(
                ctx, workloads.mix(args.single_tx), args.reps, contenders, log
            )
            done("single_row_tx")
        if "mariadb" in only:
            log(
                f"MariaDB binlog: {args.mariadb_rows:,} rows in {args.mariadb_tx:,}-row "
                f"transactions with updates and deletes, {args.reps} reps"
            )
            results["runs"]["mariadb"] = binlog.streaming(
                ctx, args.mariadb_rows, args.mariadb_tx, args.reps, log
            )
            done("mariadb")
        if "snapshot" in only:
            log(
                f"snapshot: {args.snapshot_rows:,} rows (Debezium: "
                f"{min(args.snapshot_rows, args.snapshot_debezium_rows):,}), "
                f"{args.snapshot_reps} reps"
            )
            results["runs"]["snapshot"] = measure.snapshot(
                ctx, args.snapshot_rows, args.snapshot_debezium_rows, args.snapshot_reps, log
            )
            done("snapshot")
        if "peak_rss" in only:
            log(f"peak RSS: one {args.big_tx:,}-row transaction")
            results["runs"]["peak_rss"] = measure.peak_rss(
                ctx, args.big_tx, workloads.bulk(args.big_tx, per_tx=args.big_tx), log
            )
            done("peak_rss")
        if "profile" in only:
            log("profile: py-spy on an extra Tideflow large-transaction run (not counted)")
            results["profile"] = measure.profile(
                ctx,
                workloads.bulk(min(args.rows, 300_000)),
                RESULTS / f"{stem}-tideflow.speedscope.json",
            )
            done("profile")
    finally:
        ctx.tideflow.close()
        ctx.debezium.stop()
        save()
    print(report.markdown(results))
    log(f"wrote {out} after {results['duration_s']['total']} s")


if __name__ == "__main__":
    main()
