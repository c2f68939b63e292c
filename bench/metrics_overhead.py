"""What metrics cost: Postgres → Postgres drain throughput with metrics on vs off.

Each run is a fresh `tideflow serve` (with its worker) started with ``TIDEFLOW_METRICS=on`` or
``off``, draining the same number of rows through :meth:`bench.run.Bench.to_postgres` (which
verifies every row arrived). Runs alternate on/off so drift on the machine hits both alike;
the figures are medians.

    .venv/bin/python -m bench.metrics_overhead --rows 300000 --repeat 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from bench.run import Bench


def drain(rows: int, metrics: str, work: Path) -> float:
    os.environ["TIDEFLOW_METRICS"] = metrics  # the server inherits this environment
    bench = Bench(rows, work / f"{metrics}-{time.time_ns()}")
    try:
        return bench.to_postgres()
    finally:
        bench.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=2, help="on/off pairs")
    args = parser.parse_args()
    work = Path(os.environ.get("TIDEFLOW_BENCH_DIR", "/tmp/tideflow-bench")) / "metrics-overhead"
    runs: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(args.repeat):
        for mode in ("on", "off"):
            rate = drain(args.rows, mode, work)
            runs[mode].append(rate)
            print(f"metrics {mode:3}: {rate:,.0f} rows/s", flush=True)
    on, off = statistics.median(runs["on"]), statistics.median(runs["off"])
    overhead = (off - on) / off * 100
    print(f"rows per run: {args.rows:,}; runs: {args.repeat} per mode (medians)")
    print(f"metrics on:  {on:,.0f} rows/s")
    print(f"metrics off: {off:,.0f} rows/s")
    print(f"overhead:    {overhead:.1f}% (target < 5%)")


if __name__ == "__main__":
    main()
