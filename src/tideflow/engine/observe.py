"""The metrics sampler: in-process counters → stored time series, slot sampling, health.

A daemon thread of the worker, outside every connector's hot loop. Every
``TIDEFLOW_METRICS_INTERVAL_SECONDS`` (10 s by default) it

1. snapshots :class:`~tideflow.engine.metrics.Metrics` and writes one point per metric and unit
   at resolution 10 (and, once a minute, the minute's values at resolution 60);
2. for every Postgres source (running or not) reads the slot's retained WAL, ``wal_status`` and
   ``safe_wal_size`` on a short-lived connection of its own;
3. evaluates the health thresholds (:mod:`.alerts`) and records transitions;
4. once a minute prunes points older than their retention (24 h at 10 s, 30 days at 1 min).

Failures here are logged and never reach the data path.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tideflow.engine import alerts
from tideflow.engine.cluster.retention import RetentionWatch
from tideflow.engine.metrics import LATENCY_BUCKETS_MS, Metrics, now_ms, quantile
from tideflow.engine.plan import Planner
from tideflow.store.crypto import SecretBox
from tideflow.store.db import Store
from tideflow.store.models.metrics import MetricPoint
from tideflow.store.models.resources import Pipeline

log = logging.getLogger(__name__)

FINE, COARSE = 10, 60
RETENTION = {FINE: 24 * 3600, COARSE: 30 * 24 * 3600}
OPS = ("c", "u", "d", "r")
WAL_STATUS = {"reserved": 0, "extended": 1, "unreserved": 2, "lost": 3}
# Counters are running totals; everything else is a gauge.
COUNTERS = frozenset(
    [f"events_{op}" for op in OPS]
    + ["bytes", "batches", "errors", "retries", "dead_letters", "latency_sum_ms"]
    + ["latency_count"]
    + [f"latency_bucket_{i}" for i in range(len(LATENCY_BUCKETS_MS) + 1)]
    + ["pipeline_errors"]
)


def interval_seconds() -> float:
    try:
        return max(0.2, float(os.environ.get("TIDEFLOW_METRICS_INTERVAL_SECONDS", "10")))
    except ValueError:
        return 10.0


def unit_points(
    snap: dict[str, dict[str, Any]],
    owners: dict[str, str],
    feeds: dict[str, str],
    previous: dict[str, list[int]],
    now: int,
) -> dict[str, dict[str, float]]:
    """Values to store per unit, from one metrics snapshot (pure: unit-tested)."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for unit, m in snap.items():
        kind, _, uid = unit.partition(":")
        v = out[unit]
        for op in OPS:
            v[f"events_{op}"] = float(m["events"].get(op, 0))
        v["events_total"] = float(m["events_total"])
        for key in ("bytes", "batches", "errors", "retries", "dead_letters"):
            v[key] = float(m[key])
        if m["last_event_ms"] is not None:
            v["last_event_ms"] = float(m["last_event_ms"])
        if m["last_seen_ms"] is not None:
            v["since_last_event_ms"] = float(max(0, now - m["last_seen_ms"]))
        if kind == "source":
            v["connected"] = 1.0 if m["connected"] else 0.0
            if m["behind_ms"] is not None:
                v["behind_ms"] = float(m["behind_ms"])
            for key, n in m["tables"].items():
                table, _, op = key.rpartition("|")
                t = out[f"table:{uid}:{table}"]
                t[f"events_{op}"] = t.get(f"events_{op}", 0.0) + n
            continue
        if kind != "pipeline":
            continue
        buckets = m["latency_buckets"]
        for i, n in enumerate(buckets):
            v[f"latency_bucket_{i}"] = float(n)
        v["latency_sum_ms"] = float(m["latency_sum_ms"])
        v["latency_count"] = float(sum(buckets))
        before = previous.get(unit)
        delta = buckets  # first sample, or a restart reset the totals
        if before and all(b >= a for a, b in zip(before, buckets, strict=True)):
            delta = [b - a for a, b in zip(before, buckets, strict=True)]
        previous[unit] = list(buckets)
        for q, name in ((0.5, "p50"), (0.95, "p95"), (0.99, "p99")):
            got = quantile(delta, q)
            if got is not None:
                v[f"latency_{name}_ms"] = got
        v["records_lag"] = float(m["in_flight"])
        pending = m["oldest_pending_ms"]
        if pending is not None:
            v["latency_ms"] = float(max(0, now - pending))
        elif m["latency_ms"] is not None:
            v["latency_ms"] = float(m["latency_ms"])
        dest = owners.get(unit)
        if dest:
            d = out[f"destination:{dest}"]
            for key in (*[f"events_{op}" for op in OPS], "bytes", "batches", "errors", "retries"):
                d[key] = d.get(key, 0.0) + v[key]
            d["records_lag"] = d.get("records_lag", 0.0) + v["records_lag"]
            if "latency_ms" in v:
                d["latency_ms"] = max(d.get("latency_ms", 0.0), v["latency_ms"])
        src = feeds.get(unit)
        if src:
            s = out[f"source:{src}"]
            s["pipeline_errors"] = s.get("pipeline_errors", 0.0) + v["errors"]
            if "latency_ms" in v:
                s["pipeline_lag_ms"] = max(s.get("pipeline_lag_ms", 0.0), v["latency_ms"])
            s["records_lag"] = s.get("records_lag", 0.0) + v["records_lag"]
    return out


def first_counters(
    values: dict[str, dict[str, float]], seen: set[tuple[str, str]]
) -> dict[str, dict[str, float]]:
    """Zero points for the counters that appear for the first time (then marked ``seen``).

    A running total new since the last sample was 0 then: saying so lets windows count the
    increase of its first interval too. Per metric, not per unit: a source's unit can appear
    with its slot figures one sample before its first counters do.
    """
    zeros: dict[str, dict[str, float]] = {}
    for unit, v in values.items():
        for k in v:
            if (k in COUNTERS or k == "events_total") and (unit, k) not in seen:
                seen.add((unit, k))
                zeros.setdefault(unit, {})[k] = 0.0
    return zeros


def prune(session: Session, now_s: int) -> None:
    """Delete the points older than their resolution's retention, as of ``now_s``."""
    for resolution, keep in RETENTION.items():
        session.execute(
            delete(MetricPoint).where(
                MetricPoint.resolution == resolution, MetricPoint.ts < now_s - keep
            )
        )


def _insert_points(session: Session) -> Any:
    """An insert of metric points that skips a point already stored.

    Two workers can write the same point (unit, metric, resolution, second): the pipelines of
    one source run on several workers in log mode and each credits the source's unit. The first
    writer wins that second; a plain insert would fail the whole sample with a duplicate key.
    """
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(MetricPoint).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(MetricPoint).on_conflict_do_nothing()
    return insert(MetricPoint)


def sample_slot(config: Any) -> dict[str, float]:
    """Retained WAL of a Postgres source's slot, on a short-lived connection."""
    import psycopg

    from tideflow.connectors.sources.postgres import connection

    info = connection.conninfo(config, connect_timeout=3, application_name="tideflow-metrics")
    with psycopg.connect(info, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, wal_status,"
            " safe_wal_size FROM pg_replication_slots WHERE slot_name = %s",
            (config.slot_name,),
        ).fetchone()
    if row is None:
        return {}
    out: dict[str, float] = {}
    if row[0] is not None:
        out["retained_wal_bytes"] = float(row[0])
    if row[1] is not None:
        out["wal_status"] = float(WAL_STATUS.get(str(row[1]), -1))
    if row[2] is not None:
        out["safe_wal_size"] = float(row[2])
    return out


class Sampler:
    def __init__(
        self,
        store: Store,
        secrets: SecretBox,
        metrics: Metrics,
        *,
        interval: float | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.interval = interval or interval_seconds()
        self._planner = Planner(store, secrets)
        self._previous: dict[str, list[int]] = {}
        self._seen: set[tuple[str, str]] = set()
        self._minute: dict[str, dict[str, float]] = {}
        self._minute_ts: int | None = None
        self._last_ts = 0
        self._last_prune = 0.0
        self.health = alerts.HealthTracker()
        # Whether this process samples a source's slot (None: every source). In cluster mode
        # the worker holding the source's lease does, so one worker writes those points.
        self.samples_source: Callable[[str], bool] | None = None
        self.log_retention: RetentionWatch | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="tideflow-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception:
                log.exception("metrics sample failed")

    def sample(self) -> None:
        now = now_ms()
        ts = max(now // 1000, self._last_ts + 1)
        previous_ts = self._last_ts or ts - 1
        self._last_ts = ts
        plan = self._planner.load()
        feeds = {f"pipeline:{p.id}": p.source_id for p in plan.all_pipelines() if p.source_id}
        values = unit_points(
            self.metrics.snapshot(), dict(self.metrics.owners), feeds, self._previous, now
        )
        for sid, source in plan.sources.items():
            if source.code != "postgresql" or source.config is None:
                continue
            if self.samples_source is not None and not self.samples_source(sid):
                continue  # cluster mode: the worker holding the source's lease samples its slot
            try:
                values[f"source:{sid}"].update(sample_slot(source.config))
            except Exception as exc:
                log.warning("cannot sample the slot of source %s: %s", source.name, exc)
        if self.log_retention is not None:  # cluster log mode: backlog age vs retention.ms
            running = [u.removeprefix("pipeline:") for u in values if u.startswith("pipeline:")]
            for pid, used in self.log_retention.used(running).items():
                values[f"pipeline:{pid}"]["log_retention_used"] = used
        bodies = self._pipeline_bodies()
        for unit, v in list(values.items()):
            kind, _, uid = unit.partition(":")
            if kind in ("pipeline", "source"):
                body = bodies.get(uid) if kind == "pipeline" else None
                v["health"] = float(self.health.evaluate(unit, v, self._error_rate(unit, v), body))
        zeros = first_counters(values, self._seen)
        self._write(values, ts, zeros, previous_ts)

    def _error_rate(self, unit: str, v: dict[str, float]) -> float:
        """Errors per minute over the last minute, from this process's running totals."""
        errors = v.get("errors", 0.0) + v.get("pipeline_errors", 0.0)
        return self.health.rate(unit, errors)

    def _pipeline_bodies(self) -> dict[str, dict[str, Any]]:
        with self.store.session() as s:
            rows = s.execute(select(Pipeline.id, Pipeline.destination_body)).all()
        return {pid: body for pid, body in rows if isinstance(body, dict)}

    def _write(
        self,
        values: dict[str, dict[str, float]],
        ts: int,
        zeros: dict[str, dict[str, float]],
        zero_ts: int,
    ) -> None:
        rows = [
            {"unit": u, "metric": k, "resolution": FINE, "ts": t, "value": val}
            for points, t in ((zeros, zero_ts), (values, ts))
            for u, v in points.items()
            for k, val in v.items()
        ]
        minute = (ts // 60 + 1) * 60
        if self._minute_ts is not None and minute != self._minute_ts:
            rows += [
                {"unit": u, "metric": k, "resolution": COARSE, "ts": self._minute_ts, "value": val}
                for u, v in self._minute.items()
                for k, val in v.items()
            ]
            self._minute = {}
        self._minute_ts = minute
        for u, v in values.items():
            into = self._minute.setdefault(u, {})
            for k, val in v.items():
                # Per minute: running totals and gauges as last seen, latency quantiles at worst.
                if k.startswith("latency_p"):
                    into[k] = max(into.get(k, val), val)
                else:
                    into[k] = val
        with self.store.session() as s:
            if rows:
                s.execute(_insert_points(s), rows)
            if time.monotonic() - self._last_prune > 60:
                self._last_prune = time.monotonic()
                prune(s, ts)
