"""One measured run per (workload, contender): start it, wait for the sink, verify, report.

Every function returns a plain dict for the results file. ``ok`` is true only when the sink
was consumed and matched the source (verify.check); a figure from a run that is not ok is kept
for the record but never enters a median.
"""

from __future__ import annotations

import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from tests.support import pg, pgcluster
from tests.support.server import wait_until

from bench import snapshot_bench
from bench.compare import report, verify
from bench.compare.contenders import (
    DEBEZIUM_SNAPSHOT_TUNING,
    Debezium,
    Sampler,
    SlotWatch,
    Tideflow,
    recvlogical,
)
from bench.compare.workloads import (
    BENCH_COLUMNS,
    BENCH_TABLE,
    SNAP_COLUMNS,
    SNAP_TABLE,
    Stream,
    paced_inserts,
    source_state,
    stream,
)
from bench.run import insert_rows


@dataclass
class Context:
    tideflow: Tideflow
    debezium: Debezium
    work: Path


def _tag() -> str:
    return str(time.time_ns() % 10**10)


def wait_topic(
    topic: str,
    want: int,
    alive: Callable[[], bool],
    stall_s: float = 180,
    sampler: Sampler | None = None,
) -> str:
    """Poll the topic's end offset until it holds ``want`` messages. Returns "" or why not.
    Marks ``sampler`` when the first message shows up (start-up CPU is then left out)."""
    last, changed = -1, time.monotonic()
    while True:
        n = verify.end_offset(topic)
        if sampler is not None and n > 0 and last <= 0:
            sampler.mark()
        if n >= want:
            return ""
        if not alive():
            return f"contender exited with {n} of {want} messages in {topic}"
        if n != last:
            last, changed = n, time.monotonic()
        elif time.monotonic() - changed > stall_s:
            return f"no progress for {stall_s:.0f} s at {n} of {want} messages in {topic}"
        time.sleep(0.25)


def _finish(
    topic: str,
    columns: list[tuple[str, str]],
    source: dict[int, int],
    expected: dict[str, int],
    *,
    events: int,
    problem: str,
    started: float,
    cpu_s: float,
    rss_mb: float,
    latency_after: int | None = None,
    read_from: float | None = None,
) -> dict[str, Any]:
    delivery = verify.consume(
        topic,
        columns,
        latency_column="created" if latency_after is not None else None,
        latency_after=latency_after or 0,
    )
    verdict = verify.check(delivery, source, expected)
    verify.delete_topic(topic)
    span_s = max(1e-3, (delivery.last_ts_ms - delivery.first_ts_ms) / 1000)
    out: dict[str, Any] = {
        "ok": verdict.ok and not problem,
        "detail": problem or verdict.detail,
        "events": events,
        "messages": delivery.messages,
        "duplicates": verdict.duplicates,
        "checksum_source": verdict.checksum_source,
        "checksum_sink": verdict.checksum_sink,
        # From the moment the contender's walsender started to the last message at the
        # sink (broker LogAppendTime); start-up before it is left out.
        "events_per_s": round(events / max(1e-3, delivery.last_ts_ms / 1000 - read_from))
        if read_from and delivery.last_ts_ms
        else None,
        # First to last message at the sink only (flatters a contender that buffers).
        "events_per_s_first_to_last": round(events / span_s),
        # From the start command to the last message at the sink (includes start-up).
        "wall_s": round(delivery.last_ts_ms / 1000 - started, 2) if delivery.last_ts_ms else None,
        # From the start command to the first message at the sink: the start-up.
        "first_message_s": round(delivery.first_ts_ms / 1000 - started, 2)
        if delivery.first_ts_ms
        else None,
        # Process CPU from the first message at the sink to the last (start-up left out).
        "cpu_s": cpu_s,
        # Not when the whole stream arrived within about one poll of the topic: the CPU was
        # then spent before the first message was seen and the figure would be ~0.
        "cpu_us_per_event": round(cpu_s / max(1, events) * 1e6, 2) if span_s >= 1 else None,
        "peak_rss_mb": rss_mb,
    }
    if latency_after is not None:
        lat = sorted(delivery.latencies_ms)
        if lat:
            out["latency_ms"] = {
                "p50": round(statistics.median(lat), 1),
                "p95": round(lat[int(len(lat) * 0.95) - 1], 1),
                "p99": round(lat[int(len(lat) * 0.99) - 1], 1),
                "max": round(lat[-1], 1),
                "rows": len(lat),
            }
    return out


def tideflow_stream(ctx: Context, s: Stream, source: dict[int, int]) -> dict[str, Any]:
    tf = ctx.tideflow
    slot = s.slot_for("tideflow")
    prefix = f"cmptf{_tag()}"
    topic = tf.topic(prefix, BENCH_TABLE)
    verify.create_topic(topic)
    sampler = Sampler(tf.pid)
    watch = SlotWatch(s.db, slot)
    started = time.time()
    run = tf.start(s.db, BENCH_TABLE, prefix, slot=slot, publication=s.publications["tideflow"])
    want = s.events + s.expected.get("d", 0)  # a tombstone follows each delete
    problem = wait_topic(
        topic, want, lambda: tf.server is not None and tf.server._healthy(), sampler=sampler
    )
    rss, _ = sampler.stop()
    cpu = sampler.steady_cpu()
    read_from = watch.stop()
    tf.stop(run)
    return _finish(
        topic,
        BENCH_COLUMNS,
        source,
        s.expected,
        events=s.events,
        problem=problem,
        started=started,
        cpu_s=cpu,
        rss_mb=rss,
        read_from=read_from,
    )


def debezium_stream(ctx: Context, s: Stream, source: dict[int, int]) -> dict[str, Any]:
    dbz = ctx.debezium
    slot = s.slot_for("debezium")
    prefix = f"cmpdbz{_tag()}"
    topic = dbz.topic(prefix, BENCH_TABLE)
    verify.create_topic(topic)
    props = dbz.properties(
        s.db,
        BENCH_TABLE,
        prefix,
        slot=slot,
        publication=s.publications["debezium"],
        snapshot_mode="no_data",
        offsets=ctx.work / f"offsets-{prefix}.dat",
    )
    props["debezium.source.publication.autocreate.mode"] = "disabled"
    watch = SlotWatch(s.db, slot)
    started = time.time()
    dbz.start(props)
    sampler = Sampler(dbz.pid)
    want = s.events + s.expected.get("d", 0)
    problem = wait_topic(topic, want, dbz.alive, sampler=sampler)
    rss, _ = sampler.stop()
    cpu = sampler.steady_cpu()
    read_from = watch.stop()
    if problem:
        problem += f"; log: {dbz.log_tail(5)}"
    dbz.stop()
    return _finish(
        topic,
        BENCH_COLUMNS,
        source,
        s.expected,
        events=s.events,
        problem=problem,
        started=started,
        cpu_s=cpu,
        rss_mb=rss,
        read_from=read_from,
    )


def recvlogical_stream(ctx: Context, s: Stream, source: dict[int, int]) -> dict[str, Any]:
    slot = s.slot_for("recvlogical")
    watch = SlotWatch(s.db, slot)
    started = time.time()
    first, last, rc = recvlogical(s.db, slot, s.publications["recvlogical"], s.end_lsn)
    read_from = watch.stop() or started
    s.drop_slot(slot)
    return {
        "ok": rc == 0,
        "detail": f"received the stream up to the sentinel after {s.end_lsn} (exit {rc}); the "
        "/dev/null sink has no content to compare",
        "events": s.events,
        "events_per_s": round(s.events / max(1e-3, last - read_from)),
        "events_per_s_first_to_last": round(s.events / max(1e-3, last - first)),
        "wall_s": round(last - started, 2),
    }


STREAMERS = {
    "tideflow": tideflow_stream,
    "debezium": debezium_stream,
    "recvlogical": recvlogical_stream,
}


def streaming(
    ctx: Context,
    write: Callable[[str], dict[str, int]],
    reps: int,
    contenders: list[str],
    log: Callable[[str], None],
) -> list[dict[str, Any]]:
    """``reps`` repetitions; each writes the workload once and every contender replays it, in
    an order that alternates between repetitions."""
    runs: list[dict[str, Any]] = []
    for rep in range(reps):
        order = contenders if rep % 2 == 0 else contenders[::-1]
        with stream(contenders, write) as s:
            source = source_state(s.db, BENCH_TABLE, BENCH_COLUMNS)
            log(f"  rep {rep + 1}/{reps}: {s.events:,} events {s.expected}")
            for name in order:
                result = {"contender": name, "rep": rep, **STREAMERS[name](ctx, s, source)}
                runs.append(result)
                log(
                    f"    {name:<12} {result['events_per_s'] or 0:>9,} events/s  "
                    f"wall {result.get('wall_s')} s  cpu {result.get('cpu_us_per_event', '-')} "
                    f"µs/event  ok={result['ok']} ({result['detail'][:120]})"
                )
    return runs


def latency(
    ctx: Context,
    name: str,
    rate: int,
    seconds: float,
    log: Callable[[str], None],
    warm_rows: int = 100_000,
) -> dict[str, Any]:
    """Commit → visible in the sink topic at ``rate`` rows/s: the broker's LogAppendTime
    minus the row's ``created`` (``clock_timestamp()`` inside the inserting transaction).

    A warm-up burst of ``warm_rows`` rows goes first and is not measured: a JVM compiles its
    hot path during the first tens of thousands of events, and the goal is about the steady
    state, not start-up."""
    with stream([name], lambda db: {}, sentinel=False) as s:
        slot = s.slot_for(name)
        prefix = f"cmplat{name[:3]}{_tag()}"
        topic = f"{prefix}.{BENCH_TABLE}"
        verify.create_topic(topic)
        started = time.time()
        alive: Callable[[], bool]
        if name == "tideflow":
            tf = ctx.tideflow
            run = tf.start(s.db, BENCH_TABLE, prefix, slot=slot, publication=s.publications[name])
            pid = tf.pid

            def alive() -> bool:
                return tf.server is not None and tf.server._healthy()

            stop: Callable[[], None] = lambda: tf.stop(run)  # noqa: E731
        else:
            dbz = ctx.debezium
            props = dbz.properties(
                s.db,
                BENCH_TABLE,
                prefix,
                slot=slot,
                publication=s.publications[name],
                snapshot_mode="no_data",
                offsets=ctx.work / f"offsets-{prefix}.dat",
            )
            props["debezium.source.publication.autocreate.mode"] = "disabled"
            dbz.start(props)
            pid, alive, stop = dbz.pid, dbz.alive, dbz.stop
        sampler = Sampler(pid)
        insert_rows(s.db, warm_rows, per_tx=100)
        problem = wait_topic(topic, warm_rows, alive, stall_s=300)
        written = 0
        if not problem:
            written = paced_inserts(s.db, rate, seconds, start_id=warm_rows + 1)
            problem = wait_topic(topic, warm_rows + written, alive)
        rss, cpu = sampler.stop()
        stop()
        source = source_state(s.db, BENCH_TABLE, BENCH_COLUMNS)
        out = _finish(
            topic,
            BENCH_COLUMNS,
            source,
            {"c": warm_rows + written},
            events=warm_rows + written,
            problem=problem,
            started=started,
            cpu_s=cpu,
            rss_mb=rss,
            latency_after=warm_rows,
        )
        out["achieved_rows_per_s"] = round(written / seconds)
        log(f"    {name:<12} {out.get('latency_ms')} ok={out['ok']} ({out['detail'][:120]})")
        return {"contender": name, **out}


def _tideflow_snapshot_pg(
    ctx: Context, src: str, rows: int, extra: dict[str, Any], port: int
) -> dict[str, Any]:
    """Tideflow snapshot into Postgres on ``port`` (the pg_dump | psql comparison),
    checksummed."""
    tf = ctx.tideflow
    cols = "id, account, amount::numeric(12,2), status, note, created::timestamptz"
    want = pg.table_checksum(src, SNAP_TABLE, cols, "id")
    with snapshot_bench.dest_database("cmpsnapdst", port) as dst:
        run = tf.start(
            src,
            SNAP_TABLE,
            "unused",
            destination={"connector": "postgresql", "config": pg_dest(dst, port)},
            **extra,
        )
        sampler = Sampler(tf.pid)
        began = time.monotonic()
        tf.snapshot(run)
        wait_until(lambda: tf.snapshot_done(run), 7200, interval=0.5, what="snapshot completed")
        wait_until(lambda: snapshot_bench.count(dst, port) >= rows, 600, 0.5, what="rows copied")
        wall = time.monotonic() - began
        rss, cpu = sampler.stop()
        got = pg.table_checksum(dst, SNAP_TABLE, cols, "id", port=port)
        tf.stop(run)
    return {
        "ok": got == want,
        "detail": "table identical" if got == want else f"checksum {got} != source {want}",
        "wall_s": round(wall, 2),
        "cpu_s": cpu,
        "peak_rss_mb": rss,
    }


def pg_dest(dbname: str, port: int | None = None) -> dict[str, Any]:
    from tests.support import api

    return api.pg_destination_config(dbname, port=port)


def _tideflow_snapshot_kafka(
    ctx: Context, src: str, rows: int, source: dict[int, int], extra: dict[str, Any]
) -> dict[str, Any]:
    tf = ctx.tideflow
    prefix = f"cmpsnaptf{_tag()}"
    topic = tf.topic(prefix, SNAP_TABLE)
    verify.create_topic(topic)
    sampler = Sampler(tf.pid)
    started = time.time()
    run = tf.start(src, SNAP_TABLE, prefix, **extra)
    tf.snapshot(run)
    problem = wait_topic(topic, rows, lambda: tf.server is not None and tf.server._healthy())
    rss, cpu = sampler.stop()
    tf.stop(run)
    return _finish(
        topic,
        SNAP_COLUMNS,
        source,
        {"c": rows},
        events=rows,
        problem=problem,
        started=started,
        cpu_s=cpu,
        rss_mb=rss,
    )


def _debezium_snapshot_kafka(
    ctx: Context, src: str, table: str, rows: int, source: dict[int, int]
) -> dict[str, Any]:
    dbz = ctx.debezium
    prefix = f"cmpsnapdbz{_tag()}"
    topic = dbz.topic(prefix, table)
    verify.create_topic(topic)
    slot, publication = f"cmp_dbzsnap_{_tag()}", f"cmp_pub_dbzsnap_{_tag()}"
    props = dbz.properties(
        src,
        table,
        prefix,
        slot=slot,
        publication=publication,
        snapshot_mode="initial",
        offsets=ctx.work / f"offsets-{prefix}.dat",
    )
    props.update(DEBEZIUM_SNAPSHOT_TUNING)
    started = time.time()
    dbz.start(props)
    sampler = Sampler(dbz.pid)
    problem = wait_topic(topic, rows, dbz.alive)
    rss, cpu = sampler.stop()
    dbz.stop()
    with psycopg.connect(pg.dsn(src), autocommit=True) as conn:
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = %s AND NOT active",
            (slot,),
        )
        conn.execute(f"DROP PUBLICATION IF EXISTS {publication}")
    return _finish(
        topic,
        SNAP_COLUMNS,
        source,
        {"c": rows},
        events=rows,
        problem=problem,
        started=started,
        cpu_s=cpu,
        rss_mb=rss,
    )


def snapshot(
    ctx: Context, rows: int, debezium_rows: int, reps: int, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Initial copy of a ``rows``-row table: pg_dump | psql and Tideflow into Postgres;
    Tideflow and Debezium into Kafka (wall time from the start command to the last row).

    Debezium copies the first ``debezium_rows`` rows (a copy of the table's first rows when
    fewer than ``rows``): its whole-table time is then extrapolated in the summary, because
    at its rate here the full table alone would take longer than the rest of the run."""
    extra = {"snapshot.chunk.size": 10_000, "snapshot.parallelism": 2}
    dbz_rows = min(rows, debezium_rows)
    dbz_table = SNAP_TABLE if dbz_rows == rows else f"{SNAP_TABLE}_debezium"
    runs: list[dict[str, Any]] = []
    # Both loads into Postgres go to a second server, as bench.snapshot_bench runs them: on
    # the source's own server Tideflow's walsender would also decode the WAL the load writes,
    # which neither pg_dump | psql nor a deployment with its own destination server pays.
    with (
        pg.temp_database("cmpsnap") as src,
        pgcluster.throwaway_cluster(**snapshot_bench.DEST_SETTINGS) as port,
    ):
        log(f"  filling {rows:,} rows; destinations on a second server (port {port}) ...")
        snapshot_bench.fill(src, rows)
        source = source_state(src, SNAP_TABLE, SNAP_COLUMNS)
        dbz_source = source
        if dbz_table != SNAP_TABLE:
            with psycopg.connect(pg.dsn(src), autocommit=True) as conn:
                conn.execute(f"CREATE TABLE {dbz_table} (LIKE {SNAP_TABLE} INCLUDING ALL)")
                conn.execute(
                    f"INSERT INTO {dbz_table} SELECT * FROM {SNAP_TABLE} WHERE id <= %s",
                    (dbz_rows,),
                )
                conn.execute(f"VACUUM ANALYZE {dbz_table}")
            dbz_source = source_state(src, dbz_table, SNAP_COLUMNS)
        steps: dict[str, Callable[[], dict[str, Any]]] = {
            "pg_dump_psql": lambda: _pg_dump(src, port),
            # Into Postgres with the source's default chunk size, as bench.snapshot_bench runs.
            "tideflow_to_postgres": lambda: _tideflow_snapshot_pg(
                ctx, src, rows, {"snapshot.parallelism": 2}, port
            ),
            "tideflow_to_kafka": lambda: _tideflow_snapshot_kafka(ctx, src, rows, source, extra),
            "debezium_to_kafka": lambda: _debezium_snapshot_kafka(
                ctx, src, dbz_table, dbz_rows, dbz_source
            ),
        }
        names = list(steps)
        for rep in range(reps):
            for name in names if rep % 2 == 0 else names[::-1]:
                n = dbz_rows if name == "debezium_to_kafka" else rows
                result = {"contender": name, "rep": rep, "rows": n, **steps[name]()}
                runs.append(result)
                log(
                    f"    {name:<22} wall {result.get('wall_s')} s  ok={result['ok']} "
                    f"({result['detail'][:100]})"
                )
    return runs


def _pg_dump(src: str, port: int) -> dict[str, Any]:
    # Destination on the same server as Tideflow's (see the Snapshot method).
    run = snapshot_bench.pg_dump_run(src, port)
    return {
        "ok": True,
        "detail": "baseline (psql ON_ERROR_STOP=1 exited 0)",
        "wall_s": round(run.wall, 2),
        "source_cpu_s": round(run.source_cpu, 2),
        "dest_cpu_s": round(run.dest_cpu, 2),
        "client_cpu_s": round(run.client_cpu, 2),
    }


def peak_rss(
    ctx: Context, rows: int, write: Callable[[str], dict[str, int]], log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Peak RSS while one ``rows``-row transaction streams to Kafka: the Tideflow server
    (restarted first, so earlier workloads do not count) and the Debezium JVM."""
    ctx.tideflow.restart()
    runs = []
    with stream(["tideflow", "debezium"], write) as s:
        source = source_state(s.db, BENCH_TABLE, BENCH_COLUMNS)
        for name in ("tideflow", "debezium"):
            result = {"contender": name, **STREAMERS[name](ctx, s, source)}
            runs.append(result)
            log(f"    {name:<12} peak RSS {result['peak_rss_mb']} MB ok={result['ok']}")
    return runs


def profile(ctx: Context, write: Callable[[str], dict[str, int]], out: Path) -> dict[str, Any]:
    """An extra Tideflow streaming run (not counted) under ``py-spy record``."""
    spy_bin = Path(sys.executable).parent / "py-spy"
    with stream(["tideflow"], write) as s:
        source = source_state(s.db, BENCH_TABLE, BENCH_COLUMNS)
        spy = subprocess.Popen(
            [
                str(spy_bin),
                "record",
                "--pid",
                str(ctx.tideflow.pid),
                "--format",
                "speedscope",
                "--output",
                str(out),
                "--rate",
                "100",
                "--subprocesses",
                "--nonblocking",
                "--gil",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.0)  # py-spy attaches
        result = tideflow_stream(ctx, s, source)
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(120)
        except subprocess.TimeoutExpired:
            spy.kill()
    top = report.profile_top(out) if out.exists() else []
    return {
        "file": out.name,
        "events_per_s": result["events_per_s"],
        "ok": result["ok"],
        "top_self": top,
    }
