"""Throughput probe of the postgresql source: rows/s decoded from a slot on one core.

Inserts ROWS rows of about 150 bytes in a few large transactions, then streams them through
``PostgresSource.poll`` with no destination, acknowledging every commit, and prints rows/s.
The slot is created before the inserts and read after them, so the figure is the reader's
pace (walsender + protocol + decoding into change events), not the insert rate. On a machine
with few cores the walsender and the reader share them: the reader's CPU time is printed too.

A second figure replays REPLAY_ROWS messages captured from a copy of the slot through the
decoder alone (no I/O): the pgoutput → change event cost on one core.

    .venv/bin/python -m bench.pg_decode_probe [--rows 1000000] [--txn-rows 250000]
"""

from __future__ import annotations

import argparse
import resource
import time

import psycopg
from tests.support import pg

from tideflow.connectors.sources.postgres.config import PostgresSourceConfig
from tideflow.connectors.sources.postgres.source import PostgresSource
from tideflow.events import ChangeEvent, Commit, Record


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--txn-rows", type=int, default=250_000)
    parser.add_argument("--max-records", type=int, default=5000)
    parser.add_argument("--replay-rows", type=int, default=200_000)
    args = parser.parse_args()
    with pg.temp_database("probe") as db:
        with psycopg.connect(pg.dsn(db), autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE items (id bigint PRIMARY KEY, created timestamptz NOT NULL,"
                " name text, amount numeric(12,2), qty int, note text)"
            )
        config = PostgresSourceConfig.model_validate(
            {
                "database.hostname.user.defined": pg.HOST,
                "database.port.user.defined": pg.PORT,
                "database.user": pg.USER,
                "database.password": pg.PASSWORD,
                "database.dbname": db,
                "database.sslmode": "disable",
                "table.include.list.user.defined": "public.items",
                "slot.name": f"probe_{db}",
                "publication.name": "probe_pub",
                "heartbeat.enabled": False,
            }
        )
        source = PostgresSource(config, name="probe")
        source.open(None)
        source.close()
        replay_slot = config.slot_name + "_replay"
        with psycopg.connect(pg.dsn(db), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_copy_logical_replication_slot(%s, %s)", (config.slot_name, replay_slot)
            )
        t0 = time.perf_counter()
        with psycopg.connect(pg.dsn(db), autocommit=True) as conn:
            for start in range(0, args.rows, args.txn_rows):
                conn.execute(
                    "INSERT INTO items SELECT g, now(), 'customer name ' || md5(g::text),"
                    " g * 1.25, g %% 100, 'note ' || md5((g * 7)::text) || ' ' || g"
                    " FROM generate_series(%s::bigint, %s::bigint) g",
                    (start + 1, min(start + args.txn_rows, args.rows)),
                )
        print(f"inserted {args.rows} rows in {time.perf_counter() - t0:.1f} s")

        source = PostgresSource(config, name="probe")
        source.open(None)
        events = 0
        first: float | None = None
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        while events < args.rows:
            records = source.poll(1.0, args.max_records)
            if records and first is None:
                first = time.perf_counter()
            for r in records:
                if isinstance(r, ChangeEvent):
                    events += 1
                elif isinstance(r, Commit):
                    source.ack(r.position)
            if time.perf_counter() - t0 > 600:
                raise SystemExit(f"timed out after {events} events")
        elapsed = time.perf_counter() - (first or t0)
        cpu = time.process_time() - cpu0
        source.close()
        source.drop()
        replay(config.model_copy(update={"slot_name": replay_slot}), args.replay_rows)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"decoded {events} rows in {elapsed:.2f} s: {events / elapsed:,.0f} rows/s "
            f"(first record after {(first or t0) - t0:.2f} s; reader CPU {cpu:.2f} s = "
            f"{events / cpu:,.0f} rows/CPU-s; peak RSS {rss_mb:.0f} MB)"
        )


def replay(config: PostgresSourceConfig, rows: int) -> None:
    """Decode-only figure: capture raw messages first, then time the decoder on them."""
    source = PostgresSource(config, name="probe-replay")
    source.open(None)
    stream, decoder = source._stream, source._decoder  # a probe may look inside
    assert stream is not None and decoder is not None
    messages: list[bytes] = []
    with stream.lock:
        while len(messages) < rows + 2:  # + Begin and Relation
            msg = stream.read(1.0)
            if msg is not None and msg[0] == 119:
                messages.append(msg)
    out: list[Record] = []
    events = 0
    t0, cpu0 = time.perf_counter(), time.process_time()
    for msg in messages:
        decoder.decode(msg, 25, 0, out)
        if len(out) >= 5000:
            events += len(out)
            out = []
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    events += len(out)
    source.close()
    source.drop()
    print(
        f"decoder alone: {events} rows in {elapsed:.2f} s: {events / elapsed:,.0f} rows/s "
        f"({events / cpu:,.0f} rows/CPU-s)"
    )


if __name__ == "__main__":
    main()
