"""CPU per row of an incremental snapshot into Kafka, for two Tideflow source trees alternately.

A ``--rows``-row table shaped like the harness's ``public.snap``; for each contender (``--tree``
NAME=SRC_DIR, the current checkout when none is given) and each of ``--repeat`` rounds: a fresh
``tideflow serve`` (PYTHONPATH=SRC_DIR), a Postgres source, a Kafka destination and a pipeline;
``POST /sources/snapshot``; the clock and the server's CPU seconds (user + system, from
``/proc``) run until the snapshot reports completed (recorded only once the broker acknowledged
the rows). Printed per run: wall time, rows/s, CPU µs per row, the 1-minute load average.

    .venv/bin/python -m bench.kafka_snapshot_cpu --rows 1000000 --repeat 2 \\
        --tree before=/tmp/before/src --tree after=src
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import psutil
from confluent_kafka import Consumer, TopicPartition
from tests.support import api, kafka, pg
from tests.support.server import Server

from bench.snapshot_bench import fill


def run_once(work: Path, name: str, tree: str, db: str, rows: int) -> None:
    env = {"PYTHONPATH": str(Path(tree).resolve())}
    server = Server(work / f"{name}-{time.time_ns()}", worker=True, extra_env=env).start()
    prefix = kafka.unique("tfsnapcpu")
    try:
        with server.client() as client:
            source = api.create_pg_source(client, api.pg_source_config(db, "public.snap"))
            dest = api.create(
                client,
                "/destinations",
                {
                    "name": api.unique("dst"),
                    "connector": "kafka",
                    "config": {"kafka.sink.bootstrap": kafka.BOOTSTRAP, "topic.prefix": prefix},
                },
            )
            pipe = api.create_pipeline(client, source, dest)
            api.wait_status(client, "pipelines", pipe["id"], "Active")
            api.wait_status(client, "sources", source["id"], "Active")
            assert server.proc is not None
            proc = psutil.Process(server.proc.pid)
            cpu0, t0 = sum(proc.cpu_times()[:2]), time.monotonic()
            r = client.post("/sources/snapshot", json={"source_id": source["id"]})
            assert r.status_code == 202, r.text

            def done() -> bool:
                body = client.get(f"/sources/{source['id']}/snapshot").json()
                topics = body.get("topics") or []
                return bool(topics) and all(t["status"] == "completed" for t in topics)

            # Polled every 0.5 s: each status request costs the server CPU too.
            deadline = time.monotonic() + 1800
            while not done():
                assert time.monotonic() < deadline, "snapshot did not complete"
                time.sleep(0.5)
            cpu, wall = sum(proc.cpu_times()[:2]) - cpu0, time.monotonic() - t0
            print(
                f"{name:8s} wall {wall:6.1f} s  {rows / wall:8.0f} rows/s  "
                f"cpu {cpu / rows * 1e6:5.2f} us/row  load {os.getloadavg()[0]:.1f}  "
                f"messages {_messages(f'{prefix}public.snap')}",
                flush=True,
            )
            client.delete(f"/pipelines/{pipe['id']}")
            client.delete(f"/sources/{source['id']}", params={"force": True})
    finally:
        server.stop()
        kafka.delete_topics_with_prefix(prefix)


def _messages(topic: str) -> int:
    """Messages in the topic (the destination creates one partition)."""
    consumer = Consumer({"bootstrap.servers": kafka.BOOTSTRAP, "group.id": kafka.unique("n")})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        return int(high - low)
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--tree", action="append", default=[], help="NAME=SRC_DIR")
    args = parser.parse_args()
    trees = [t.split("=", 1) for t in args.tree] or [["current", "src"]]
    db = pg.create_database("snapcpu")
    try:
        fill(db, args.rows)
        with tempfile.TemporaryDirectory(prefix="tf-snapcpu-") as work:
            for _ in range(args.repeat):
                for name, tree in trees:
                    run_once(Path(work), name, tree, db, args.rows)
    finally:
        pg.drop_database(db)


if __name__ == "__main__":
    main()
