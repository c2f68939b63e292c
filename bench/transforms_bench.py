"""Transform overhead: Postgres → Postgres throughput with no transform, a trivial JavaScript and a
trivial Python map_filter, through a live `tideflow serve` (reuses :class:`bench.run.Bench`).

Each figure is end to end and only reported once the destination holds every row. Target: each
transform run keeps at least 50% of the untransformed throughput.

Wall-clock throughput swings with the machine's load, so each run also reports the CPU time per
row of the server and its child processes (the Python sandbox worker): that figure barely moves
with other processes' load and gives the like-for-like cost of a transform. The load average is
printed with the figures.

    .venv/bin/python -m bench.transforms_bench --rows 200000 [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time
from pathlib import Path
from typing import Any

import psutil
from tests.support import api

from bench.run import Bench

JS = """function _streamkap_transform(valueObject, keyObject, topic, timestamp) {
  valueObject.note = valueObject.note.toUpperCase();
  return valueObject;
}"""
PY = """def _streamkap_transform(valueObject, keyObject, topic, timestamp):
    valueObject["note"] = valueObject["note"].upper()
    return valueObject
"""
TARGET = 0.5


def _children_cpu(proc: psutil.Process) -> float:
    total = 0.0
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            times = child.cpu_times()
            total += times.user + times.system
    return total


class TransformBench(Bench):
    """:class:`Bench` whose pipelines run the transforms listed in ``transforms`` (ids)."""

    transforms: list[str] = []

    def drain(self, source: dict[str, Any], src: str, done: Any) -> float:
        """As :meth:`Bench.drain`; ``cpu_us_per_row`` also counts the server's children."""
        assert self.server.proc is not None
        proc = psutil.Process(self.server.proc.pid)
        before = _children_cpu(proc)
        rate = super().drain(source, src, done)
        self.cpu_us_per_row += round((_children_cpu(proc) - before) / self.rows * 1e6, 2)
        return rate

    def pipeline(self, src: str, destination: dict[str, Any]) -> dict[str, Any]:
        c = self.client
        source = api.create(
            c,
            "/sources",
            {
                "name": api.unique("bsrc"),
                "connector": "postgresql",
                "config": api.pg_source_config(src, "public.bench"),
            },
        )
        dest = api.create(c, "/destinations", {"name": api.unique("bdst"), **destination})
        body = {
            "name": api.unique("pipe"),
            "snapshot_new_tables": False,
            "source": {
                "id": source["id"],
                "name": source["name"],
                "connector": source["connector"],
                "topics": [],
            },
            "destination": {
                "id": dest["id"],
                "name": dest["name"],
                "connector": dest["connector"],
            },
            "transforms": [{"id": t} for t in self.transforms],
            "tags": [],
        }
        pipe = api.create(c, "/pipelines", body)
        api.wait_status(c, "pipelines", pipe["id"], "Active")
        api.wait_status(c, "sources", source["id"], "Active")
        return source

    def deploy(self, language: str, code: str) -> str:
        t = api.create(
            self.client,
            "/transforms",
            {
                "transform": "map_filter",
                "config": {
                    "transforms.name": api.unique("bench"),
                    "transforms.language": language,
                },
                "implementation": {"language": language, "value_transform": code},
            },
        )
        self.client.put(f"/transforms/{t['id']}/deploy-job-live/1").raise_for_status()
        return str(t["id"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds of the three runs, interleaved; medians are reported (shared cores are noisy)",
    )
    args = parser.parse_args()
    work = Path(os.environ.get("TIDEFLOW_BENCH_DIR", "/tmp/tideflow-bench")) / str(time.time_ns())
    bench = TransformBench(args.rows, work)
    runs: dict[str, list[float]] = {"none": [], "javascript": [], "python": []}
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    try:
        ids: dict[str, list[str]] = {
            "none": [],
            "javascript": [bench.deploy("JavaScript", JS)],
            "python": [bench.deploy("Python", PY)],
        }
        for _ in range(args.repeat):
            for name in runs:
                bench.transforms = ids[name]
                rate = bench.to_postgres()
                runs[name].append(rate)
                cpu[name].append(bench.cpu_us_per_row)
                load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
                print(
                    f"Postgres → Postgres, {name:<10}: {rate:>9,.0f} rows/s, "
                    f"{bench.cpu_us_per_row:>6.1f} CPU µs/row (load average {load})",
                    flush=True,
                )
    finally:
        bench.close()
    figures = {name: statistics.median(values) for name, values in runs.items()}
    costs = {name: statistics.median(values) for name, values in cpu.items()}
    if args.repeat > 1:
        for name, value in figures.items():
            print(
                f"median of {args.repeat}, {name:<10}: {value:>9,.0f} rows/s, "
                f"{costs[name]:>6.1f} CPU µs/row"
            )
    for name in ("javascript", "python"):
        ratio = figures[name] / figures["none"]
        verdict = "meets" if ratio >= TARGET else "MISSES"
        print(
            f"{name}: {ratio:.0%} of no-transform throughput ({verdict} the {TARGET:.0%} "
            f"target); CPU per row {costs[name] / costs['none']:.2f} times no-transform's"
        )


if __name__ == "__main__":
    main()
