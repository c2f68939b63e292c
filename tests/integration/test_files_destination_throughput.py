"""Throughput of the files destination: reports figures, asserts only correctness.

``TIDEFLOW_BENCH_ROWS`` sets the row count (default 200,000; documented figures use 1,000,000).
"""

from __future__ import annotations

import datetime as dt
import os
import time
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tideflow.connectors.destinations.files.config import FilesDestinationConfig
from tideflow.connectors.destinations.files.destination import FilesDestination
from tideflow.envelope import SourceInfo
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


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_files_throughput(tmp_path: Path, fmt: str, record_property: pytest.RecordProperty) -> None:
    evs = [
        ChangeEvent(
            Op.CREATE,
            ORDERS,
            None,
            {
                "id": i,
                "customer": f"customer-{i % 1000}",
                "amount": Decimal(i % 10000) / 100,
                "status": "new",
                "created_at": AT,
                "qty": i % 7,
            },
            {"lsn": i},
            1000,
            77,
        )
        for i in range(ROWS)
    ]
    dest = FilesDestination(
        FilesDestinationConfig.model_validate(
            {"path.user.defined": str(tmp_path), "format.user.defined": fmt}
        ),
        name="bench",
    )
    dest.bind_source(SourceInfo("postgresql", "bench", "db"))
    dest.open()
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, ROWS, BATCH):
        dest.write(Batch(evs[i : i + BATCH], {"lsn": i + BATCH}))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(
        f"files {fmt}: {ROWS} rows, {ROWS / wall:,.0f} rows/s wall, "
        f"{cpu * 1e6 / ROWS:.1f} µs/row CPU; load {os.getloadavg()[0]:.1f}"
    )
    record_property(f"files_{fmt}_rows_per_s", round(ROWS / wall))
    files = sorted((tmp_path / "public.orders").iterdir())
    assert len(files) == ROWS // BATCH
    if fmt == "parquet":
        assert sum(pq.read_metadata(f).num_rows for f in files) == ROWS
    else:
        assert sum(f.read_bytes().count(b"\n") for f in files) == ROWS
