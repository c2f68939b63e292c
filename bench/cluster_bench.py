"""Cluster mode throughput: 6 independent Postgres → Postgres pipelines on 1, 2 and 3 workers.

For each mode (``log``: source → Kafka topics → pipeline, the cluster default; ``direct``:
source and pipeline in one unit, ``TIDEFLOW_CLUSTER_LOG=off``) and each worker count: a fresh
metadata store, ``tideflow serve --no-worker`` and N ``tideflow worker`` processes; 6 source
databases each with one pipeline to its own destination database; once every pipeline is
Active, ``--rows`` rows are inserted into every source (transactions of 2,000 rows, the 6
sources in parallel) and the clock runs until every destination holds all of them.

Printed per run: wall time (and how much of it the inserts took), aggregate rows/s, and the
CPU seconds the worker processes used (user + system) per 1,000 rows. On one host every
worker shares the same cores (and Postgres and Kafka run there too), so more workers add
coordination and Kafka overhead and cannot add CPU: this measures the overhead, not a
scale-out.

    .venv/bin/python -m bench.cluster_bench --rows 20000
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
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg
from confluent_kafka.admin import AdminClient
from tests.support import api, pg, workload
from tests.support.server import Server, wait_until

SECRET = "cluster-bench-secret-key"
PIPELINES = 6
CHUNK = 2000
RESULTS = Path(__file__).parent / "results"


def start_worker(
    worker_id: str, url: str, data_dir: Path, log_mode: bool
) -> subprocess.Popen[bytes]:
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "TIDEFLOW_SECRET_KEY": SECRET,
        "TIDEFLOW_CLUSTER_LOG": "on" if log_mode else "off",
        "TIDEFLOW_LOG_LEVEL": "WARNING",
    }
    cmd = [sys.executable, "-m", "tideflow.cli.main", "worker", "--id", worker_id]
    cmd += ["--database-url", url, "--data-dir", str(data_dir)]
    with open(data_dir / "worker.log", "ab") as log:
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=log)


def cpu_seconds(procs: list[subprocess.Popen[bytes]]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = psutil.Process(p.pid).cpu_times()
            total += t.user + t.system
    return total


def insert(dbname: str, rows: int) -> None:
    for start in range(1, rows + 1, CHUNK):
        workload.insert_range(dbname, start, min(CHUNK, rows + 1 - start))


def count(dbname: str) -> int:
    try:
        with psycopg.connect(pg.dsn(dbname)) as conn:
            row = conn.execute("SELECT count(*) FROM public.items").fetchone()
            return int(row[0]) if row else 0
    except psycopg.Error:
        return 0  # the destination table is created with the first batch


def run(workers: int, log_mode: bool, rows: int, tmp: Path) -> dict[str, Any]:
    meta = pg.create_database("cbmeta")
    url = pg.url(meta)
    made: list[str] = []
    procs: list[subprocess.Popen[bytes]] = []
    sources: list[str] = []
    srv = Server(
        tmp / "api", database_url=url, worker=False, extra_env={"TIDEFLOW_SECRET_KEY": SECRET}
    )
    try:
        srv.start()
        procs = [start_worker(f"w{i}", url, tmp / f"w{i}", log_mode) for i in range(1, workers + 1)]
        pairs = []
        for _ in range(PIPELINES):
            src, dst = pg.create_database("cbsrc"), pg.create_database("cbdst")
            made += [src, dst]
            workload.create_schema(src)
            pairs.append((src, dst))
        with srv.client() as c:
            pipelines = []
            for src, dst in pairs:
                body = {"connector": "postgresql", "config": api.pg_source_config(src)}
                source = api.create(c, "/sources", {"name": api.unique("src"), **body})
                sources.append(source["id"])
                dest_body = {"connector": "postgresql", "config": api.pg_destination_config(dst)}
                dest = api.create(c, "/destinations", {"name": api.unique("dst"), **dest_body})
                pipelines.append(api.create_pipeline(c, source, dest)["id"])
            for pid in pipelines:
                api.wait_status(c, "pipelines", pid, "Active", timeout=300)
        cpu0, t0 = cpu_seconds(procs), time.monotonic()
        load0 = os.getloadavg()[0]
        writers = [threading.Thread(target=insert, args=(src, rows)) for src, _ in pairs]
        for t in writers:
            t.start()
        for t in writers:
            t.join()
        inserted = time.monotonic() - t0
        wait_until(
            lambda: all(count(dst) == rows for _, dst in pairs),
            1800,
            interval=0.5,
            what="every destination to hold every row",
        )
        elapsed, cpu = time.monotonic() - t0, cpu_seconds(procs) - cpu0
        total = rows * PIPELINES
        return {
            "mode": "log" if log_mode else "direct",
            "workers": workers,
            "pipelines": PIPELINES,
            "rows": total,
            "seconds": round(elapsed, 2),
            "insert_seconds": round(inserted, 2),
            "rows_per_s": round(total / elapsed),
            "worker_cpu_s_per_1k_rows": round(1000 * cpu / total, 3),
            "load_average": round((load0 + os.getloadavg()[0]) / 2, 1),
        }
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        srv.stop()
        for name in made:
            pg.drop_database(name)
        pg.drop_database(meta)
        admin = AdminClient(
            {"bootstrap.servers": os.environ.get("TIDEFLOW_LOG_BOOTSTRAP", "127.0.0.1:9092")}
        )
        topics = [
            t for t in admin.list_topics(timeout=10).topics
            if any(t.startswith(f"tideflow.{sid}.") for sid in sources)
        ]  # fmt: skip
        if topics:
            for future in admin.delete_topics(topics, operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    future.result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000, help="rows inserted per source")
    parser.add_argument("--workers", default="1,2,3", help="worker counts to run")
    parser.add_argument("--modes", default="log,direct", help="log and/or direct")
    parser.add_argument("--quick", action="store_true", help="5,000 rows per source")
    args = parser.parse_args()
    rows = 5000 if args.quick else args.rows
    results = []
    for mode in args.modes.split(","):
        for n in (int(w) for w in args.workers.split(",")):
            with tempfile.TemporaryDirectory(prefix="tideflow-cluster-bench-") as tmp:
                result = run(n, mode == "log", rows, Path(tmp))
            results.append(result)
            print(
                f"{result['mode']:>6} {n} worker(s): {result['rows']} rows in "
                f"{result['seconds']:.1f}s (inserts took {result['insert_seconds']:.1f}s) = "
                f"{result['rows_per_s']} rows/s aggregate, "
                f"{result['worker_cpu_s_per_1k_rows']} worker CPU s / 1k rows "
                f"(load average {result['load_average']})",
                flush=True,
            )
    RESULTS.mkdir(exist_ok=True)
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    out = RESULTS / f"{day}-cluster{'-quick' if args.quick else ''}.json"
    out.write_text(json.dumps({"rows_per_source": rows, "runs": results}, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
