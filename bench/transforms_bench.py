"""Transform overhead: Postgres → Postgres throughput with no transform, a trivial JavaScript and a
trivial Python map_filter, through a live `tideflow serve` (reuses :class:`bench.run.Bench`).

Each figure is end to end and only reported once the destination holds every row. Target: each
transform run keeps at least 50% of the untransformed throughput.

    .venv/bin/python -m bench.transforms_bench --rows 200000 [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

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


class TransformBench(Bench):
    """:class:`Bench` whose pipelines run the transforms listed in ``transforms`` (ids)."""

    transforms: list[str] = []

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
                print(f"Postgres → Postgres, {name:<10}: {rate:>9,.0f} rows/s", flush=True)
    finally:
        bench.close()
    figures = {name: statistics.median(values) for name, values in runs.items()}
    if args.repeat > 1:
        for name, value in figures.items():
            print(f"median of {args.repeat}, {name:<10}: {value:>9,.0f} rows/s")
    for name in ("javascript", "python"):
        ratio = figures[name] / figures["none"]
        verdict = "meets" if ratio >= TARGET else "MISSES"
        print(f"{name}: {ratio:.0%} of no-transform throughput ({verdict} the {TARGET:.0%} target)")


if __name__ == "__main__":
    main()
