"""`make bench`: streaming throughput, latency and memory of Tideflow on this machine.

Every figure is measured end to end through a live `tideflow serve` process against the real
Postgres of `make services`, and every run verifies the destination received every row before
it reports a figure. Results are printed and written to bench/results/<date>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psutil
import psycopg
import pyarrow.parquet as pq
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic
from tests.support import api, pg
from tests.support.server import Server, wait_until

ROOT = Path(__file__).resolve().parent
ALL = ("pg", "parquet", "kafka", "latency", "kafka-latency", "rss")
TABLE = """
CREATE TABLE public.bench (
    id bigint PRIMARY KEY,
    account integer NOT NULL,
    amount numeric(12, 2) NOT NULL,
    note text NOT NULL,
    created timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""
# ~150 bytes per row on the wire.
INSERT = (
    "INSERT INTO public.bench (id, account, amount, note) "
    "SELECT g, g %% 1000, (g %% 100000) / 100.0, repeat(md5(g::text), 3) "
    "FROM generate_series(%s::bigint, %s::bigint) g"
)


def insert_rows(dbname: str, total: int, per_tx: int = 100_000, start: int = 1) -> None:
    with psycopg.connect(pg.dsn(dbname)) as conn:
        for lo in range(start, start + total, per_tx):
            conn.execute(INSERT, (lo, min(lo + per_tx, start + total) - 1))
            conn.commit()


def insert_at_rate(dbname: str, rate: int, seconds: int) -> int:
    """Insert ids 2, 3, ... at ``rate`` rows/s for ``seconds`` (one transaction every 10 ms);
    return the last id."""
    per_tick, tick = max(1, rate // 100), 0.01
    next_id, deadline = 2, time.perf_counter() + seconds
    with psycopg.connect(pg.dsn(dbname), autocommit=True) as conn:
        t0 = time.perf_counter()
        while time.perf_counter() < deadline:
            conn.execute(INSERT, (next_id, next_id + per_tick - 1))
            next_id += per_tick
            t0 += tick
            time.sleep(max(0.0, t0 - time.perf_counter()))
    return next_id - 1


def percentiles(lat: list[float], seconds: int) -> dict[str, float]:
    lat = sorted(lat)
    return {
        "rows": float(len(lat)),
        "p50_ms": round(statistics.median(lat), 1),
        "p99_ms": round(lat[int(len(lat) * 0.99) - 1], 1),
        "achieved_rows_per_s": round(len(lat) / seconds),
    }


class TopicWatch:
    """Reads a one-partition topic from its start on a thread and keeps, per message past
    id 1, commit → broker append (the topic's LogAppendTime) and commit → consumer receipt,
    in ms, against the row's ``created`` (its insert time, at or before the commit)."""

    def __init__(self, topic: str) -> None:
        self.append_ms: list[float] = []
        self.receive_ms: list[float] = []
        self.error: Exception | None = None
        self._consumer = Consumer(
            {
                "bootstrap.servers": KAFKA,
                "group.id": f"tideflow-bench-{time.time_ns()}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
                "fetch.min.bytes": 1,
            }
        )
        self._consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._read()
        except Exception as exc:  # reported by close(), in the bench's thread
            self.error = exc

    def _read(self) -> None:
        while not self._stop.is_set():
            # One at a time: consume(n, timeout) would hold early messages until n arrived.
            msg = self._consumer.poll(0.05)
            received = time.time() * 1000
            if msg is not None and msg.error() is None and msg.value() is not None:
                self._note(msg, received)

    def _note(self, msg: Message, received: float) -> None:
        after = orjson.loads(msg.value() or b"null")["after"]
        if after["id"] <= 1:
            return
        created = datetime.fromisoformat(after["created"]).timestamp() * 1000
        kind, appended = msg.timestamp()
        if kind != TIMESTAMP_LOG_APPEND_TIME:
            raise AssertionError("the topic does not use LogAppendTime")
        self.append_ms.append(appended - created)
        self.receive_ms.append(received - created)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._consumer.close()
        if self.error is not None:
            raise self.error


def count(dbname: str, table: str = "public.bench") -> int:
    try:
        with psycopg.connect(pg.dsn(dbname)) as conn:
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            return int(row[0]) if row else 0
    except psycopg.errors.UndefinedTable:
        return 0


def parquet_rows(root: Path) -> int:
    return sum(pq.read_metadata(p).num_rows for p in root.rglob("*.parquet"))


KAFKA = os.environ.get("TIDEFLOW_BENCH_KAFKA", "127.0.0.1:9092")


def delete_topic(topic: str) -> None:
    """Delete ``topic`` and wait for the broker's answer (an unawaited request may never be
    sent before the client is gone)."""
    admin = AdminClient({"bootstrap.servers": KAFKA})  # must outlive the request
    admin.delete_topics([topic])[topic].result(timeout=30)


class TopicSize:
    """Sum of the end offsets of one topic (0 while it does not exist yet), asked through one
    long-lived client: a new client per check cost the 2-core machine CPU while measuring."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._consumer = Consumer({"bootstrap.servers": KAFKA, "group.id": "tideflow-bench"})

    def __call__(self) -> int:
        try:
            info = self._consumer.list_topics(self.topic, timeout=5).topics.get(self.topic)
            if info is None or info.error is not None:
                return 0
            total = 0
            for p in info.partitions:
                tp = TopicPartition(self.topic, p)
                total += self._consumer.get_watermark_offsets(tp, timeout=5)[1]
            return total
        except KafkaException:
            return 0

    def close(self) -> None:
        self._consumer.close()


def kafka_messages(topic: str) -> int:
    size = TopicSize(topic)
    try:
        return size()
    finally:
        size.close()


class Bench:
    def __init__(self, rows: int, work: Path) -> None:
        self.rows = rows
        self.work = work
        self.cpu_us_per_row = 0.0
        self.server = Server(work / "server", worker=True).start()
        self.client = self.server.client()
        assert self.server.proc is not None
        # Before any connector ran: what the process costs with nothing to stream.
        self.idle_rss_mb = round(psutil.Process(self.server.proc.pid).memory_info().rss / 2**20, 1)

    def close(self) -> None:
        self.client.close()
        self.server.stop()

    def pipeline(self, src: str, destination: dict[str, Any]) -> dict[str, Any]:
        source = api.create(
            self.client,
            "/sources",
            {
                "name": api.unique("bsrc"),
                "connector": "postgresql",
                "config": api.pg_source_config(src, "public.bench"),
            },
        )
        dest = api.create(self.client, "/destinations", {"name": api.unique("bdst"), **destination})
        pipe = api.create_pipeline(self.client, source, dest)
        api.wait_status(self.client, "pipelines", pipe["id"], "Active")
        api.wait_status(self.client, "sources", source["id"], "Active")
        return source

    def drain(self, source: dict[str, Any], src: str, done: Any) -> float:
        """Pause, write `rows` rows, resume, and time until `done()` says all arrived."""
        self.client.post(f"/sources/{source['id']}/pause").raise_for_status()
        api.wait_status(self.client, "sources", source["id"], "Paused")
        insert_rows(src, self.rows)
        assert self.server.proc is not None
        # Server CPU time per row is the like-for-like figure on a shared machine, where
        # wall-clock throughput moves with other processes' load.
        proc = psutil.Process(self.server.proc.pid)
        cpu0 = sum(proc.cpu_times()[:2])
        started = time.perf_counter()
        self.client.post(f"/sources/{source['id']}/resume").raise_for_status()
        wait_until(done, 1800, interval=0.2, what="all rows to arrive")
        elapsed = time.perf_counter() - started
        self.cpu_us_per_row = round((sum(proc.cpu_times()[:2]) - cpu0) / self.rows * 1e6, 2)
        return self.rows / elapsed

    def to_postgres(self) -> float:
        with pg.temp_database("bsrc") as src, pg.temp_database("bdst") as dst:
            with psycopg.connect(pg.dsn(src), autocommit=True) as conn:
                conn.execute(TABLE)
            source = self.pipeline(
                src, {"connector": "postgresql", "config": api.pg_destination_config(dst)}
            )
            return self.drain(source, src, lambda: count(dst) >= self.rows)

    def to_parquet(self) -> float:
        with pg.temp_database("bsrc") as src:
            with psycopg.connect(pg.dsn(src), autocommit=True) as conn:
                conn.execute(TABLE)
            lake = self.work / f"lake-{time.time_ns()}"
            source = self.pipeline(
                src,
                {
                    "connector": "files",
                    "config": {"path.user.defined": str(lake), "format.user.defined": "parquet"},
                },
            )
            return self.drain(source, src, lambda: parquet_rows(lake) >= self.rows)

    def to_kafka(self) -> float:
        """Debezium-envelope JSON messages, one per row, into a fresh one-partition topic."""
        prefix = f"bench{time.time_ns()}."
        topic = f"{prefix}public.bench"
        with pg.temp_database("bsrc") as src:
            with psycopg.connect(pg.dsn(src), autocommit=True) as conn:
                conn.execute(TABLE)
            source = self.pipeline(
                src,
                {
                    "connector": "kafka",
                    "config": {"kafka.sink.bootstrap": KAFKA, "topic.prefix": prefix},
                },
            )
            size = TopicSize(topic)
            try:
                rate = self.drain(source, src, lambda: size() >= self.rows)
                # Duplicates would inflate the figure: the topic must hold exactly one per row.
                time.sleep(1.0)
                got = size()
            finally:
                size.close()
            if got != self.rows:
                raise AssertionError(f"topic {topic} holds {got} messages, expected {self.rows}")
            delete_topic(topic)
            return rate

    def latency(self, rate: int, seconds: int) -> dict[str, float]:
        """Commit → durable-at-destination latency at a fixed rate, from the destination's
        own clock (`arrived` default) against the source commit time column."""
        with pg.temp_database("bsrc") as src, pg.temp_database("bdst") as dst:
            with psycopg.connect(pg.dsn(src), autocommit=True) as conn:
                conn.execute(TABLE)
            self.pipeline(
                src, {"connector": "postgresql", "config": api.pg_destination_config(dst)}
            )
            insert_rows(src, 1)
            wait_until(lambda: count(dst) >= 1, 60, what="first row")
            with psycopg.connect(pg.dsn(dst), autocommit=True) as conn:
                conn.execute(
                    "ALTER TABLE public.bench ADD COLUMN arrived timestamptz "
                    "DEFAULT clock_timestamp()"
                )
            total = insert_at_rate(src, rate, seconds)
            wait_until(lambda: count(dst) >= total, 120, what="latency rows")
            with psycopg.connect(pg.dsn(dst)) as conn:
                lat = [
                    float(r[0])
                    for r in conn.execute(
                        "SELECT extract(epoch FROM arrived - created) * 1000 FROM public.bench "
                        "WHERE id > 1"
                    )
                ]
            return percentiles(lat, seconds)

    def kafka_latency(self, rate: int, seconds: int) -> dict[str, Any]:
        """Commit → message in Kafka at a fixed rate: the broker's LogAppendTime (durable at
        the destination, acks=all) and the time a consumer reading the topic received it."""
        prefix = f"benchlat{time.time_ns()}."
        topic = f"{prefix}public.bench"
        admin = AdminClient({"bootstrap.servers": KAFKA})
        # Created here, before the destination would, to stamp messages with the append time.
        config = {"message.timestamp.type": "LogAppendTime"}
        admin.create_topics([NewTopic(topic, 1, 1, config=config)])[topic].result()
        try:
            with pg.temp_database("bsrc") as src:
                with psycopg.connect(pg.dsn(src), autocommit=True) as conn:
                    conn.execute(TABLE)
                self.pipeline(
                    src,
                    {
                        "connector": "kafka",
                        "config": {"kafka.sink.bootstrap": KAFKA, "topic.prefix": prefix},
                    },
                )
                insert_rows(src, 1)
                wait_until(lambda: kafka_messages(topic) >= 1, 60, what="first message")
                watch = TopicWatch(topic)
                try:
                    total = insert_at_rate(src, rate, seconds)
                    wait_until(
                        lambda: len(watch.append_ms) >= total - 1, 120, what="latency messages"
                    )
                finally:
                    watch.close()
                if len(watch.append_ms) != total - 1:
                    raise AssertionError(
                        f"topic {topic} holds {len(watch.append_ms)} rows, expected {total - 1}"
                    )
        finally:
            delete_topic(topic)
        return {
            **percentiles(watch.append_ms, seconds),
            "consumer_p50_ms": percentiles(watch.receive_ms, seconds)["p50_ms"],
            "consumer_p99_ms": percentiles(watch.receive_ms, seconds)["p99_ms"],
        }

    def peak_rss(self, rows: int) -> float:
        """Peak RSS (MB) of the server while streaming one `rows`-row transaction."""
        with pg.temp_database("bsrc") as src, pg.temp_database("bdst") as dst:
            with psycopg.connect(pg.dsn(src), autocommit=True) as conn:
                conn.execute(TABLE)
            source = self.pipeline(
                src, {"connector": "postgresql", "config": api.pg_destination_config(dst)}
            )
            assert self.server.proc is not None
            proc = psutil.Process(self.server.proc.pid)
            peak = [proc.memory_info().rss]
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    peak[0] = max(peak[0], proc.memory_info().rss)
                    time.sleep(0.05)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            self.client.post(f"/sources/{source['id']}/pause").raise_for_status()
            api.wait_status(self.client, "sources", source["id"], "Paused")
            insert_rows(src, rows, per_tx=rows)
            self.client.post(f"/sources/{source['id']}/resume").raise_for_status()
            wait_until(lambda: count(dst) >= rows, 1800, interval=0.5, what="big transaction")
            stop.set()
            sampler.join()
            return round(peak[0] / 2**20, 1)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--big-tx", type=int, default=2_000_000)
    parser.add_argument("--rate", type=int, default=5_000)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run of a few minutes: 200k rows, 300k-row transaction, 10 s latency",
    )
    parser.add_argument(
        "--only",
        default=",".join(ALL),
        help=f"comma-separated subset of {','.join(ALL)}",
    )
    args = parser.parse_args()
    if args.quick:
        args.rows, args.big_tx, args.seconds = 200_000, 300_000, 10
    only = set(args.only.split(","))
    work = Path(os.environ.get("TIDEFLOW_BENCH_DIR", "/tmp/tideflow-bench")) / str(time.time_ns())
    bench = Bench(args.rows, work)
    results: dict[str, Any] = {"date": datetime.now(UTC).isoformat(), "machine": machine()}
    results["idle_rss_mb"] = bench.idle_rss_mb
    results["args"] = {
        "rows": args.rows,
        "big_tx": args.big_tx,
        "rate": args.rate,
        "seconds": args.seconds,
    }
    try:
        if "pg" in only:
            results["pg_to_pg_rows_per_s"] = round(bench.to_postgres())
            results["pg_to_pg_cpu_us_per_row"] = bench.cpu_us_per_row
            print(
                f"Postgres → Postgres: {results['pg_to_pg_rows_per_s']:,} rows/s "
                f"({bench.cpu_us_per_row} µs server CPU/row)",
                flush=True,
            )
        if "parquet" in only:
            results["pg_to_parquet_rows_per_s"] = round(bench.to_parquet())
            results["pg_to_parquet_cpu_us_per_row"] = bench.cpu_us_per_row
            print(
                f"Postgres → Parquet:  {results['pg_to_parquet_rows_per_s']:,} rows/s "
                f"({bench.cpu_us_per_row} µs server CPU/row)",
                flush=True,
            )
        if "kafka" in only:
            results["pg_to_kafka_rows_per_s"] = round(bench.to_kafka())
            results["pg_to_kafka_cpu_us_per_row"] = bench.cpu_us_per_row
            print(
                f"Postgres → Kafka:    {results['pg_to_kafka_rows_per_s']:,} rows/s "
                f"({bench.cpu_us_per_row} µs server CPU/row)",
                flush=True,
            )
        if "latency" in only:
            results["latency"] = bench.latency(args.rate, args.seconds)
            print(f"Latency at {args.rate} rows/s: {results['latency']}", flush=True)
        if "kafka-latency" in only:
            results["kafka_latency"] = bench.kafka_latency(args.rate, args.seconds)
            print(f"Kafka latency at {args.rate} rows/s: {results['kafka_latency']}", flush=True)
        if "rss" in only:
            results["peak_rss_mb_big_tx"] = bench.peak_rss(args.big_tx)
            print(
                f"Peak RSS, one {args.big_tx:,}-row transaction: "
                f"{results['peak_rss_mb_big_tx']} MB (idle {bench.idle_rss_mb} MB)",
                flush=True,
            )
    finally:
        bench.close()
    suffix = "-quick" if args.quick else ""
    if only != set(ALL):
        # A subset run must not overwrite the full run's results file.
        suffix += "-" + "-".join(sorted(only))
    out = ROOT / "results" / f"{datetime.now(UTC):%Y-%m-%d}{suffix}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
