"""Throughput probe of the kafka destination: events/s produced and acknowledged by the broker.

Writes EVENTS change events of a ~150-byte row (the shape of bench/pg_decode_probe.py) in
batches of BATCH through ``KafkaDestination.write`` — which returns only once the broker has
acknowledged every message (acks=all, idempotent) — to a fresh topic on the broker of
scripts/services/kafka.sh, and prints events/s for each mode.

    .venv/bin/python -m bench.kafka_probe [--events 200000] [--batch 10000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
import uuid
from decimal import Decimal

from tests.support import kafka

from tideflow.connectors.destinations.kafka.config import KafkaDestinationConfig
from tideflow.connectors.destinations.kafka.destination import KafkaDestination
from tideflow.events import Batch, ChangeEvent, Column, Op, TableSchema

TABLE = TableSchema(
    "public",
    "items",
    (
        Column("id", "int8", "int", nullable=False, key=True),
        Column("created", "timestamptz", "timestamptz", nullable=False),
        Column("name", "text", "text"),
        Column("amount", "numeric(12,2)", "decimal"),
        Column("qty", "int4", "int"),
        Column("note", "text", "text"),
    ),
    ("id",),
)


def events(n: int) -> list[ChangeEvent]:
    created = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    return [
        ChangeEvent(
            Op.CREATE,
            TABLE,
            None,
            {
                "id": i,
                "created": created,
                "name": f"item number {i}",
                "amount": Decimal("1234.56"),
                "qty": i % 100,
                "note": "a note of some forty characters or so..",
            },
            {"lsn": 1000 + i},
            1_700_000_000_000,
            txid=i // 1000,
        )
        for i in range(n)
    ]


def run(
    label: str, evs: list[ChangeEvent], batch: int, *, quiet: bool = False, **config: object
) -> None:
    prefix = f"probe-{uuid.uuid4().hex[:8]}."
    cfg = KafkaDestinationConfig.model_validate(
        kafka.dest_config(**{"topic.prefix": prefix, **config})
    )
    dest = KafkaDestination(cfg, name=f"probe-{label}")
    dest.open()
    dest.write(Batch(events=evs[:1]))  # topic creation and connections out of the timing
    started = time.perf_counter()
    for i in range(0, len(evs), batch):
        dest.write(Batch(events=evs[i : i + batch]))
    elapsed = time.perf_counter() - started
    dest.close()
    kafka.delete_topics_with_prefix(prefix)
    rate = len(evs) / elapsed
    if not quiet:
        print(f"{label:<24} {len(evs):>8} events  {elapsed:6.2f} s  {rate:>10,.0f} events/s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    kafka.broker()
    evs = events(args.events)
    # Warm up the broker's JIT and page cache so the first mode is not penalised.
    run("warm-up", evs[:50_000], args.batch, quiet=True)
    run("json", evs, args.batch)
    run("json+schemas", evs, args.batch, **{"json.schema.enable": True})
    run("json transactional", evs, args.batch, transactional=True)
    run("json, 3 partitions", evs, args.batch, **{"topic.partitions": 3})


if __name__ == "__main__":
    main()
