"""Throughput of the Postgres destination: reports figures, asserts only correctness.

``TIDEFLOW_BENCH_ROWS`` sets the row count (default 200,000; the documented figures use
1,000,000). Client and server CPU are reported next to wall time because test machines are
often shared: their sum is the uncontended cost of a row (the two run one after the other).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

from tests.support import pg
from tideflow.connectors.destinations.postgres.config import PostgresDestinationConfig
from tideflow.connectors.destinations.postgres.destination import PostgresDestination
from tideflow.events import Batch, ChangeEvent, Column, Op, TableSchema

pytestmark = pytest.mark.integration

ROWS = int(os.environ.get("TIDEFLOW_BENCH_ROWS", "200000"))
BATCH = 5000
ORDERS = TableSchema(
    "public",
    "orders",
    (
        Column("id", "int8", "int", False, True),
        Column("customer", "text", "text"),
        Column("amount", "numeric(12,2)", "decimal"),
        Column("status", "text", "text"),
        Column("created_at", "timestamptz", "timestamptz"),
        Column("qty", "int4", "int"),
    ),
    ("id",),
)
AT = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)


def events(op: Op, offset: int) -> list[ChangeEvent]:
    return [
        ChangeEvent(
            op,
            ORDERS,
            None,
            {
                "id": i,
                "customer": f"customer-{i % 1000}",
                "amount": Decimal(i % 10000) / 100,
                "status": "new" if op is Op.CREATE else "paid",
                "created_at": AT,
                "qty": i % 7,
            },
            {"lsn": offset + i},
            1000,
        )
        for i in range(ROWS)
    ]


def backend_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture
def dest() -> Iterator[tuple[PostgresDestination, str]]:
    with pg.temp_database("tfbench") as db:
        d = PostgresDestination(
            PostgresDestinationConfig.model_validate(
                {
                    "database.hostname.user.defined": pg.HOST,
                    "database.port.user.defined": pg.PORT,
                    "database.database.user.defined": db,
                    "connection.username": pg.USER,
                    "connection.password": pg.PASSWORD,
                    "database.sslmode": "disable",
                    "table.name.prefix": "bench",
                }
            ),
            name="bench",
        )
        d.open()
        try:
            yield d, db
        finally:
            d.close()


def test_insert_then_update_throughput(
    dest: tuple[PostgresDestination, str], record_property: pytest.RecordProperty
) -> None:
    d, db = dest
    assert d._conn is not None
    pid = d._conn.info.backend_pid
    for label, op, offset in (("insert", Op.CREATE, 0), ("update", Op.UPDATE, 10**9)):
        evs = events(op, offset)
        t0, c0, b0 = time.perf_counter(), time.process_time(), backend_cpu(pid)
        for i in range(0, ROWS, BATCH):
            d.write(Batch(evs[i : i + BATCH], {"lsn": offset + i + BATCH}))
        wall = time.perf_counter() - t0
        client, server = time.process_time() - c0, backend_cpu(pid) - b0
        figure = (
            f"postgres {label}: {ROWS} rows, {ROWS / wall:,.0f} rows/s wall; "
            f"client {client * 1e6 / ROWS:.1f} µs/row, server {server * 1e6 / ROWS:.1f} "
            f"µs/row (uncontended ≈ {ROWS / (client + server):,.0f} rows/s); "
            f"load {os.getloadavg()[0]:.1f}"
        )
        print(figure)
        record_property(f"postgres_{label}_rows_per_s", round(ROWS / wall))
    assert pg.table_checksum(db, "bench.orders", "count(*)")[0] == 1
    (count, _) = pg.table_checksum(db, "bench.orders", "id", "id")
    assert count == ROWS
