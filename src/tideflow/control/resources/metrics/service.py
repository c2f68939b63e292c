"""Metrics read from the stored time series (``metric_points``), never from a worker's memory.

The worker's sampler writes one point per metric and unit every interval (resolution 10) and
per minute (resolution 60). Counters are running totals of a worker process; windowed figures
add up their increases (a drop means the worker restarted: the new total is the increase).
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tideflow.control.context import AppContext
from tideflow.control.resources import configs
from tideflow.engine.metrics import LATENCY_BUCKETS_MS
from tideflow.engine.observe import COARSE, COUNTERS, FINE, WAL_STATUS
from tideflow.errors import Invalid, NotFound
from tideflow.store.models.metrics import MetricPoint
from tideflow.store.models.resources import Destination, Pipeline, Source
from tideflow.store.models.runtime import UnitStatus

HEALTH = {0: "healthy", 1: "warning", 2: "critical"}
WAL_NAMES = {v: k for k, v in WAL_STATUS.items()}
WINDOWS = {"1m": 60, "5m": 300, "1h": 3600, "24h": 86400}
UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}

# API key → (stored metric, name, unit). Sources use Debezium-style keys.
SOURCE_KEYS: dict[str, tuple[str, str, str]] = {
    "StreamingConnected": ("connected", "Streaming Connected", "boolean"),
    "StreamingMilliSecondsBehindSource": ("behind_ms", "Milliseconds Behind Source", "ms"),
    "StreamingTotalNumberOfCreateEventsSeen": ("events_c", "Create Events Seen", "count"),
    "StreamingTotalNumberOfUpdateEventsSeen": ("events_u", "Update Events Seen", "count"),
    "StreamingTotalNumberOfDeleteEventsSeen": ("events_d", "Delete Events Seen", "count"),
    "StreamingMilliSecondsSinceLastEvent": ("since_last_event_ms", "Since Last Event", "ms"),
    "byteTotal": ("bytes", "Bytes Read", "bytes"),
    "errors": ("errors", "Errors", "count"),
    "retainedWalBytes": ("retained_wal_bytes", "Retained WAL", "bytes"),
    "safeWalSize": ("safe_wal_size", "Safe WAL Size", "bytes"),
    "recordsLag": ("records_lag", "Lag in Events", "count"),
}
DESTINATION_KEYS: dict[str, tuple[str, str, str]] = {
    "recordsWritten": ("events_total", "Records Written", "count"),
    "createsWritten": ("events_c", "Creates Written", "count"),
    "updatesWritten": ("events_u", "Updates Written", "count"),
    "deletesWritten": ("events_d", "Deletes Written", "count"),
    "bytesWritten": ("bytes", "Bytes Written", "bytes"),
    "latency": ("latency_ms", "Latency", "milliseconds"),
    "recordsLag": ("records_lag", "Lag in Events", "count"),
    "errors": ("errors", "Errors", "count"),
    "retries": ("retries", "Retries", "count"),
}
PIPELINE_KEYS: dict[str, tuple[str, str, str]] = {
    "latency": ("latency_ms", "Pipeline Latency", "milliseconds"),
    "recordsLag": ("records_lag", "Lag in Events", "count"),
    "latencyP50": ("latency_p50_ms", "Latency p50", "milliseconds"),
    "latencyP95": ("latency_p95_ms", "Latency p95", "milliseconds"),
    "latencyP99": ("latency_p99_ms", "Latency p99", "milliseconds"),
    "recordsWritten": ("events_total", "Records Written", "count"),
    "bytesWritten": ("bytes", "Bytes Written", "bytes"),
    "errors": ("errors", "Errors", "count"),
    "retries": ("retries", "Retries", "count"),
}
STATUS_META = {"name": "Status", "unit": "state"}
HEALTH_META = {"name": "Health", "unit": "healthy|warning|critical"}


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def latest(ctx: AppContext, unit: str) -> tuple[int | None, dict[str, float]]:
    """The most recent stored point of every metric of ``unit``."""
    with ctx.store.session() as s:
        ts = s.scalar(
            select(func.max(MetricPoint.ts)).where(
                MetricPoint.unit == unit, MetricPoint.resolution == FINE
            )
        )
        if ts is None:
            return None, {}
        rows = s.execute(
            select(MetricPoint.metric, MetricPoint.value).where(
                MetricPoint.unit == unit, MetricPoint.resolution == FINE, MetricPoint.ts == ts
            )
        ).all()
    return int(ts), {str(m): float(v) for m, v in rows}


def latest_many(ctx: AppContext, units: list[str]) -> dict[str, dict[str, float]]:
    return {u: latest(ctx, u)[1] for u in units}


def series(
    ctx: AppContext, unit: str, start: float, end: float, metrics: list[str] | None = None
) -> dict[str, list[tuple[int, float]]]:
    resolution = FINE if end - start <= 24 * 3600 else COARSE
    q = select(MetricPoint.metric, MetricPoint.ts, MetricPoint.value).where(
        MetricPoint.unit == unit,
        MetricPoint.resolution == resolution,
        MetricPoint.ts >= int(start),
        MetricPoint.ts <= int(end) + 1,
    )
    if metrics:
        q = q.where(MetricPoint.metric.in_(metrics))
    out: dict[str, list[tuple[int, float]]] = defaultdict(list)
    with ctx.store.session() as s:
        for metric, ts, value in s.execute(q.order_by(MetricPoint.ts)):
            out[metric].append((int(ts), float(value)))
    return out


def increase(points: list[tuple[int, float]]) -> float:
    """Sum of the increases of a running total (a drop is a restart: count the new total)."""
    total = 0.0
    for (_, a), (_, b) in itertools.pairwise(points):
        total += b - a if b >= a else b
    return total


def summarise(metric: str, points: list[tuple[int, float]]) -> float | None:
    if not points:
        return None
    if metric in COUNTERS or metric == "events_total":
        return increase(points)
    if metric.startswith("latency_p") or metric in ("retained_wal_bytes", "records_lag"):
        return max(v for _, v in points)
    return points[-1][1]


def window_of(
    time_interval: int | None,
    time_unit: str | None,
    timestamp_from: str | None,
    timestamp_to: str | None,
) -> tuple[float, float]:
    now = time.time()
    end = _parse_ts(timestamp_to) if timestamp_to else now
    if timestamp_from:
        start = _parse_ts(timestamp_from)
    else:
        unit = UNIT_SECONDS.get(time_unit or "minute")
        if unit is None:
            raise Invalid("time_unit must be minute, hour or day")
        start = end - (time_interval or (5 if (time_unit or "minute") == "minute" else 1)) * unit
    if start > end:
        raise Invalid("timestamp_from is after timestamp_to")
    return start, end


def _parse_ts(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise Invalid(f"not a timestamp: {value!r}") from exc
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _shape(
    ctx: AppContext,
    unit: str,
    keys: dict[str, tuple[str, str, str]],
    time_type: str,
    window: tuple[float, float] | None,
) -> dict[str, Any]:
    if time_type == "latest" or window is None:
        _, values = latest(ctx, unit)
        return {k: values.get(m, 0) for k, (m, _, _) in keys.items()}
    start, end = window
    data = series(ctx, unit, start, end, [m for m, _, _ in keys.values()])
    if time_type == "timeseries":
        return {
            k: [{"timestamp": _iso(ts), "value": v} for ts, v in data.get(m, [])]
            for k, (m, _, _) in keys.items()
        }
    return {k: summarise(m, data.get(m, [])) or 0 for k, (m, _, _) in keys.items()}


def _metadata(keys: dict[str, tuple[str, str, str]]) -> dict[str, Any]:
    return {k: {"name": name, "unit": unit} for k, (_, name, unit) in keys.items()}


def _status(ctx: AppContext, unit: str) -> str:
    with ctx.store.session() as s:
        row = s.get(UnitStatus, unit)
    return row.status if row is not None else "Unknown"


def health_of(values: dict[str, float]) -> str:
    return HEALTH.get(int(values.get("health", 0)), "healthy")


def health(ctx: AppContext, kind: str, uid: str) -> str:
    return health_of(latest(ctx, f"{kind}:{uid}")[1])


def _require(ctx: AppContext, model: Any, uid: str) -> None:
    # Ids are 24-hex; anything else (e.g. a NUL byte, which Postgres refuses) cannot exist.
    if not configs.is_object_id(uid):
        raise NotFound(f"{model.__tablename__[:-1]} {uid!r} not found")
    with ctx.store.session() as s:
        if s.get(model, uid) is None:
            raise NotFound(f"{model.__tablename__[:-1]} {uid} not found")


def pipeline_metadata() -> dict[str, Any]:
    meta = _metadata(PIPELINE_KEYS)
    meta["status"] = STATUS_META
    meta["health"] = HEALTH_META
    return meta


def pipeline_metrics(ctx: AppContext, pipeline_id: str) -> dict[str, Any]:
    _require(ctx, Pipeline, pipeline_id)
    unit = f"pipeline:{pipeline_id}"
    ts, values = latest(ctx, unit)
    data: dict[str, Any] = {k: values.get(m, 0) for k, (m, _, _) in PIPELINE_KEYS.items()}
    data["status"] = _status(ctx, unit)
    data["health"] = health_of(values)
    data["measuredAt"] = _iso(ts) if ts is not None else None
    return {"data": data, "metadata": pipeline_metadata()}


def source_metrics(
    ctx: AppContext, source_id: str, time_type: str, window: tuple[float, float] | None
) -> dict[str, Any]:
    _require(ctx, Source, source_id)
    unit = f"source:{source_id}"
    data = _shape(ctx, unit, SOURCE_KEYS, time_type, window)
    _, values = latest(ctx, unit)
    state = _status(ctx, unit)
    data["state"] = state
    data["streamingState"] = "Connected" if values.get("connected") else "Disconnected"
    data["walStatus"] = WAL_NAMES.get(int(values.get("wal_status", -1)))
    data["health"] = health_of(values)
    data.update(_snapshot_metrics(ctx, source_id))
    meta = _metadata(SOURCE_KEYS)
    meta["state"] = STATUS_META
    meta["health"] = HEALTH_META
    return {"data": data, "metadata": meta}


def _snapshot_metrics(ctx: AppContext, source_id: str) -> dict[str, Any]:
    out: dict[str, Any] = {"SnapshotRunning": 0, "SnapshotCompleted": 0, "snapshotStatus": []}
    import importlib

    try:
        snapshots = importlib.import_module("tideflow.control.resources.snapshots.service")
    except ImportError:
        return out
    fn = getattr(snapshots, "source_snapshot_metrics", None)
    if callable(fn):
        try:
            got = fn(ctx, source_id)
        except TypeError:
            got = fn(ctx.store, source_id)
        if isinstance(got, dict):
            out.update(got)
    return out


def destination_metrics(
    ctx: AppContext, destination_id: str, time_type: str, window: tuple[float, float] | None
) -> dict[str, Any]:
    _require(ctx, Destination, destination_id)
    unit = f"destination:{destination_id}"
    data = _shape(ctx, unit, DESTINATION_KEYS, time_type, window)
    return {"data": data, "metadata": _metadata(DESTINATION_KEYS)}


def window_rates(ctx: AppContext, unit: str, seconds: int) -> dict[str, Any]:
    """Rates over the points in the last ``seconds`` (per second of the span they cover)."""
    end = time.time()
    data = series(ctx, unit, end - seconds, end)
    out: dict[str, Any] = {"measured": bool(data)}
    span = _span(data)
    events = sum(increase(data.get(f"events_{op}", [])) for op in ("c", "u", "d", "r"))
    out["events"] = events
    out["bytes"] = increase(data.get("bytes", []))
    out["errors"] = increase(data.get("errors", [])) + increase(data.get("pipeline_errors", []))
    out["span"] = span
    out["events_per_second"] = events / span if span else 0.0
    out["bytes_per_second"] = out["bytes"] / span if span else 0.0
    out["error_rate_per_minute"] = out["errors"] * 60 / span if span else 0.0
    return out


def _span(data: dict[str, list[tuple[int, float]]]) -> float:
    pts = data.get("events_c") or data.get("bytes") or []
    return float(pts[-1][0] - pts[0][0]) if len(pts) > 1 else 0.0


def stream_figures(ctx: AppContext, source_id: str, window: str) -> dict[str, Any]:
    unit = f"source:{source_id}"
    rates = window_rates(ctx, unit, WINDOWS[window])
    _, values = latest(ctx, unit)
    lag = values.get("pipeline_lag_ms")
    last = values.get("last_event_ms")
    return {
        "events_per_second": round(rates["events_per_second"], 3),
        "bytes_per_second": round(rates["bytes_per_second"], 3),
        "lag_seconds": round(lag / 1000, 3) if lag is not None else None,
        "error_rate_per_minute": round(rates["error_rate_per_minute"], 4),
        "last_event_at": _iso(last / 1000) if last else None,
        "measured": rates["measured"],
    }


def approx_events_per_minute(ctx: AppContext) -> tuple[int, bool]:
    with ctx.store.session() as s:
        units = list(s.scalars(select(Source.id)))
    total, measured = 0.0, False
    for sid in units:
        r = window_rates(ctx, f"source:{sid}", 300)
        measured = measured or r["measured"]
        total += r["events_per_second"] * 60
    return round(total), measured


def bucket_bounds() -> tuple[int, ...]:
    return LATENCY_BUCKETS_MS


def health_in(session: Session, unit: str) -> str | None:
    """The unit's health from its latest stored point (None: never measured)."""
    ts = session.scalar(
        select(func.max(MetricPoint.ts)).where(
            MetricPoint.unit == unit, MetricPoint.resolution == FINE
        )
    )
    if ts is None:
        return None
    value = session.scalar(
        select(MetricPoint.value).where(
            MetricPoint.unit == unit,
            MetricPoint.resolution == FINE,
            MetricPoint.ts == ts,
            MetricPoint.metric == "health",
        )
    )
    return HEALTH.get(int(value or 0), "healthy")
