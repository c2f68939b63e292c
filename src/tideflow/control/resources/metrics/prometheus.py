"""``GET /metrics``: Prometheus exposition rendered from the latest stored points.

One path for both modes (embedded worker or ``--no-worker``): figures are the worker's last
sample (at most one interval old) and agree with the platform and streams APIs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from sqlalchemy import func, select

from tideflow.control.context import AppContext
from tideflow.engine.metrics import LATENCY_BUCKETS_MS
from tideflow.engine.observe import FINE
from tideflow.store.models.metrics import MetricPoint

OPS = ("c", "u", "d", "r")


def _latest_points(ctx: AppContext) -> dict[str, dict[str, float]]:
    with ctx.store.session() as s:
        newest = (
            select(MetricPoint.unit, func.max(MetricPoint.ts).label("ts"))
            .where(MetricPoint.resolution == FINE)
            .group_by(MetricPoint.unit)
            .subquery()
        )
        rows = s.execute(
            select(MetricPoint.unit, MetricPoint.metric, MetricPoint.value)
            .join(
                newest,
                (MetricPoint.unit == newest.c.unit) & (MetricPoint.ts == newest.c.ts),
            )
            .where(MetricPoint.resolution == FINE)
        ).all()
    out: dict[str, dict[str, float]] = {}
    for unit, metric, value in rows:
        out.setdefault(unit, {})[metric] = float(value)
    return out


class _Collector:
    def __init__(self, points: dict[str, dict[str, float]]) -> None:
        self.points = points

    def collect(self) -> Iterator[Any]:
        by_kind: dict[str, list[tuple[str, dict[str, float]]]] = {}
        for unit, values in self.points.items():
            kind, _, uid = unit.partition(":")
            by_kind.setdefault(kind, []).append((uid, values))

        src_events = CounterMetricFamily(
            "tideflow_source_events", "Change events read, by op", labels=["source", "op"]
        )
        table_events = CounterMetricFamily(
            "tideflow_source_table_events",
            "Change events read, by table and op",
            labels=["source", "table", "op"],
        )
        src_bytes = CounterMetricFamily("tideflow_source_bytes", "Bytes read", labels=["source"])
        src_errors = CounterMetricFamily(
            "tideflow_source_errors", "Source errors (each retried)", labels=["source"]
        )
        connected = GaugeMetricFamily(
            "tideflow_source_connected", "1 while streaming", labels=["source"]
        )
        behind = GaugeMetricFamily(
            "tideflow_source_behind_source_seconds",
            "Read time minus source commit time of the newest event read",
            labels=["source"],
        )
        wal = GaugeMetricFamily(
            "tideflow_source_retained_wal_bytes",
            "WAL retained by the source's replication slot",
            labels=["source"],
        )
        safe = GaugeMetricFamily(
            "tideflow_source_safe_wal_size_bytes",
            "WAL that can still be written before the slot is invalidated",
            labels=["source"],
        )
        health = GaugeMetricFamily(
            "tideflow_health", "0 healthy, 1 warning, 2 critical", labels=["kind", "id"]
        )
        for uid, v in by_kind.get("source", []):
            for op in OPS:
                src_events.add_metric([uid, op], v.get(f"events_{op}", 0.0))
            src_bytes.add_metric([uid], v.get("bytes", 0.0))
            src_errors.add_metric([uid], v.get("errors", 0.0))
            connected.add_metric([uid], v.get("connected", 0.0))
            if "behind_ms" in v:
                behind.add_metric([uid], v["behind_ms"] / 1000)
            if "retained_wal_bytes" in v:
                wal.add_metric([uid], v["retained_wal_bytes"])
            if "safe_wal_size" in v:
                safe.add_metric([uid], v["safe_wal_size"])
            health.add_metric(["source", uid], v.get("health", 0.0))
        for uid, v in by_kind.get("table", []):
            sid, _, table = uid.partition(":")
            for op in OPS:
                if f"events_{op}" in v:
                    table_events.add_metric([sid, table, op], v[f"events_{op}"])

        p_events = CounterMetricFamily(
            "tideflow_pipeline_events_written",
            "Events durable at the destination, by op",
            labels=["pipeline", "op"],
        )
        p_bytes = CounterMetricFamily(
            "tideflow_pipeline_bytes_written", "Bytes written", labels=["pipeline"]
        )
        p_batches = CounterMetricFamily(
            "tideflow_pipeline_batches", "Batches written", labels=["pipeline"]
        )
        p_errors = CounterMetricFamily(
            "tideflow_pipeline_errors", "Write errors", labels=["pipeline"]
        )
        p_retries = CounterMetricFamily(
            "tideflow_pipeline_retries", "Write retries", labels=["pipeline"]
        )
        lag = GaugeMetricFamily(
            "tideflow_pipeline_records_lag",
            "Events read but not yet durable at the destination",
            labels=["pipeline"],
        )
        cur = GaugeMetricFamily(
            "tideflow_pipeline_current_latency_seconds",
            "Age of the oldest event in flight, else latency of the newest batch",
            labels=["pipeline"],
        )
        hist = HistogramMetricFamily(
            "tideflow_pipeline_latency_seconds",
            "Source commit to durable at the destination, per event",
            labels=["pipeline"],
        )
        for uid, v in by_kind.get("pipeline", []):
            for op in OPS:
                p_events.add_metric([uid, op], v.get(f"events_{op}", 0.0))
            p_bytes.add_metric([uid], v.get("bytes", 0.0))
            p_batches.add_metric([uid], v.get("batches", 0.0))
            p_errors.add_metric([uid], v.get("errors", 0.0))
            p_retries.add_metric([uid], v.get("retries", 0.0))
            lag.add_metric([uid], v.get("records_lag", 0.0))
            if "latency_ms" in v:
                cur.add_metric([uid], v["latency_ms"] / 1000)
            health.add_metric(["pipeline", uid], v.get("health", 0.0))
            buckets: list[tuple[str, float]] = []
            running = 0.0
            for i, bound in enumerate((*LATENCY_BUCKETS_MS, None)):
                running += v.get(f"latency_bucket_{i}", 0.0)
                le = "+Inf" if bound is None else repr(bound / 1000)
                buckets.append((le, running))
            hist.add_metric([uid], buckets, v.get("latency_sum_ms", 0.0) / 1000)

        d_events = CounterMetricFamily(
            "tideflow_destination_events_written",
            "Events durable at the destination, by op",
            labels=["destination", "op"],
        )
        d_bytes = CounterMetricFamily(
            "tideflow_destination_bytes_written", "Bytes written", labels=["destination"]
        )
        d_errors = CounterMetricFamily(
            "tideflow_destination_errors", "Write errors", labels=["destination"]
        )
        for uid, v in by_kind.get("destination", []):
            for op in OPS:
                d_events.add_metric([uid, op], v.get(f"events_{op}", 0.0))
            d_bytes.add_metric([uid], v.get("bytes", 0.0))
            d_errors.add_metric([uid], v.get("errors", 0.0))
        yield from (src_events, table_events, src_bytes, src_errors, connected, behind, wal, safe)
        yield from (p_events, p_bytes, p_batches, p_errors, p_retries, lag, cur, hist)
        yield from (d_events, d_bytes, d_errors, health)


def render(ctx: AppContext) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(_latest_points(ctx)))
    return bytes(generate_latest(registry))
