"""Observability end to end: measured counters, lag under an outage, retained WAL, agreement
between the platform API, the streams summary and Prometheus (docs/metrics.md)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.support import api, pg, workload
from tests.support.proxy import Proxy
from tests.support.server import Server, wait_until

pytestmark = pytest.mark.integration

N, M, K = 500, 200, 50


@pytest.fixture
def dbs() -> Iterator[tuple[str, str]]:
    with pg.temp_database("msrc") as src, pg.temp_database("mdst") as dst:
        workload.create_schema(src)
        yield src, dst


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(
        tmp_path / "srv",
        worker=True,
        extra_env={
            "TIDEFLOW_METRICS_INTERVAL_SECONDS": "1",
            "TIDEFLOW_ALERT_LATENCY_MS_WARNING": "3000",
            "TIDEFLOW_ALERT_LATENCY_MS_CRITICAL": "8000",
            # Retries during an outage are errors; keep health about latency here.
            "TIDEFLOW_ALERT_ERROR_RATE_PER_MINUTE_WARNING": "1000000",
            "TIDEFLOW_ALERT_ERROR_RATE_PER_MINUTE_CRITICAL": "1000000",
        },
    )
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def setup(c: httpx.Client, src: str, dst: str, dest_port: int | None = None) -> dict[str, Any]:
    source = api.create(
        c,
        "/sources",
        {"name": api.unique("src"), "connector": "postgresql", "config": api.pg_source_config(src)},
    )
    dest = api.create_pg_destination(c, api.pg_destination_config(dst, port=dest_port))
    pipe = api.create_pipeline(c, source, dest)
    api.wait_status(c, "pipelines", pipe["id"], "Active")
    api.wait_status(c, "sources", source["id"], "Active")
    return {"source": source["id"], "destination": dest["id"], "pipeline": pipe["id"]}


def sql(dbname: str, statement: str) -> None:
    with psycopg.connect(pg.dsn(dbname), autocommit=True) as conn:
        conn.execute(statement)


def prom(c: httpx.Client) -> dict[str, float]:
    r = c.get("/metrics")
    assert r.status_code == 200, r.text
    out = {}
    for line in r.text.splitlines():
        m = re.match(r"^(\w+(?:\{[^}]*\})?) (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def test_counters_latency_and_agreement(server: Server, dbs: tuple[str, str]) -> None:
    src, dst = dbs
    with server.client() as c:
        ids = setup(c, src, dst)
        workload.insert_range(src, 1, N)
        sql(src, f"UPDATE public.items SET i2 = i2 + 1 WHERE id <= {M}")
        sql(src, f"DELETE FROM public.items WHERE id > {N - K}")

        def source_latest() -> dict[str, Any]:
            return dict(c.get(f"/sources/{ids['source']}/metrics").json()["data"])

        wait_until(
            lambda: source_latest()["StreamingTotalNumberOfDeleteEventsSeen"] == K,
            60,
            what="deletes counted",
        )
        data = source_latest()
        assert data["StreamingTotalNumberOfCreateEventsSeen"] == N
        assert data["StreamingTotalNumberOfUpdateEventsSeen"] == M
        assert data["StreamingConnected"] == 1 and data["streamingState"] == "Connected"
        assert data["byteTotal"] > 0 and data["state"] == "Active"
        assert 0 <= data["StreamingMilliSecondsBehindSource"] < 60_000
        assert data["retainedWalBytes"] >= 0 and data["walStatus"] in ("reserved", "extended")
        assert data["SnapshotRunning"] == 0

        def pipe() -> dict[str, Any]:
            return dict(c.get(f"/pipelines/{ids['pipeline']}/metrics").json())

        wait_until(lambda: pipe()["data"]["recordsWritten"] == N + M + K, 60, what="events written")
        doc = pipe()
        assert doc["metadata"]["latency"] == {"name": "Pipeline Latency", "unit": "milliseconds"}
        assert doc["metadata"]["recordsLag"] == {"name": "Lag in Events", "unit": "count"}
        wait_until(lambda: pipe()["data"]["recordsLag"] == 0, 30, what="lag back to 0")
        got = pipe()["data"]
        assert got["status"] == "Active" and got["health"] == "healthy"
        assert 0 <= got["latency"] < 30_000 and got["latencyP99"] >= got["latencyP50"] > 0

        dest = c.get(f"/destinations/{ids['destination']}/metrics").json()["data"]
        assert dest["createsWritten"] == N and dest["updatesWritten"] == M
        assert dest["deletesWritten"] == K and dest["bytesWritten"] > 0

        # Windows answered from stored points agree with the running totals and Prometheus.
        summary = c.get(
            f"/sources/{ids['source']}/metrics",
            params={"time_type": "timesummary", "time_interval": 10, "time_unit": "minute"},
        ).json()["data"]
        assert summary["StreamingTotalNumberOfCreateEventsSeen"] == N
        assert summary["StreamingTotalNumberOfDeleteEventsSeen"] == K
        series = c.get(
            f"/sources/{ids['source']}/metrics",
            params={"time_type": "timeseries", "time_interval": 10, "time_unit": "minute"},
        ).json()["data"]["StreamingTotalNumberOfCreateEventsSeen"]
        assert series and series[-1]["value"] == N and {"timestamp", "value"} <= set(series[0])
        p = prom(c)
        sid, pid = ids["source"], ids["pipeline"]
        assert p[f'tideflow_source_events_total{{op="c",source="{sid}"}}'] == N
        assert p[f'tideflow_source_events_total{{op="u",source="{sid}"}}'] == M
        key = f'tideflow_source_table_events_total{{op="d",source="{sid}",table="public.items"}}'
        assert p[key] == K
        assert p[f'tideflow_pipeline_latency_seconds_count{{pipeline="{pid}"}}'] == N + M + K
        assert p[f'tideflow_pipeline_records_lag{{pipeline="{pid}"}}'] == 0
        assert p[f'tideflow_source_retained_wal_bytes{{source="{sid}"}}'] >= 0
        agree_over_one_window(c, ids["source"], p, N + M + K)
        streams = c.get("/api/streams/summary").json()["data"]["attributes"]
        assert streams["metrics_available"] is True
        # Every event of this server happened within the last 5 minutes: the per-minute rate
        # over 5 minutes times the span covered is the total (within rounding).
        assert streams["approx_events_per_minute"] > 0


def agree_over_one_window(c: httpx.Client, sid: str, p: dict[str, float], total: int) -> None:
    """The streams API (addressed by the source's stream_id), the platform API and Prometheus
    give the same figures for one 5-minute window: the one all the events of this test fall in.

    The rate is events over the span of the stored points; the span is read from the platform
    timeseries fetched just before and after, and only a pair with no sample written in
    between (same timestamps) counts as the same period."""
    listed = c.get("/api/streams", params={"limit": 200}).json()["data"]
    stream = next(s for s in listed if s["attributes"]["source_id"] == sid)
    window = {"time_type": "timeseries", "time_interval": 5, "time_unit": "minute"}
    keys = [f"StreamingTotalNumberOf{k}EventsSeen" for k in ("Create", "Update", "Delete")]

    def one_period() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None:
        before = c.get(f"/sources/{sid}/metrics", params=window).json()["data"]
        attrs = c.get(f"/api/streams/{stream['id']}/metrics", params={"window": "5m"}).json()
        summary = c.get(
            f"/sources/{sid}/metrics", params={**window, "time_type": "timesummary"}
        ).json()["data"]
        after = c.get(f"/sources/{sid}/metrics", params=window).json()["data"]
        if [x["timestamp"] for x in before[keys[0]]] != [x["timestamp"] for x in after[keys[0]]]:
            return None
        return before, attrs["data"]["attributes"], summary

    got = wait_until(one_period, 30, what="a window with no sample written meanwhile")
    series, attrs, summary = got
    assert sum(summary[k] for k in keys) == total
    ops = {"c": N, "u": M, "d": K}
    assert (
        sum(p[f'tideflow_source_events_total{{op="{op}",source="{sid}"}}'] for op in ops) == total
    )
    stamps = [_epoch(x["timestamp"]) for x in series[keys[0]]]
    span = stamps[-1] - stamps[0]
    assert span > 0 and attrs["window"] == "5m" and attrs["stream_id"] == stream["id"]
    assert attrs["events_per_second"] == pytest.approx(total / span, abs=1e-3)
    assert attrs["error_rate_per_minute"] == 0


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_outage_grows_lag_and_latency_then_recovers(server: Server, dbs: tuple[str, str]) -> None:
    src, dst = dbs
    proxy = Proxy(pg.HOST, pg.PORT).start()
    try:
        with server.client() as c:
            ids = setup(c, src, dst, dest_port=proxy.port)

            def pipe() -> dict[str, Any]:
                return dict(c.get(f"/pipelines/{ids['pipeline']}/metrics").json()["data"])

            proxy.cut()
            workload.insert_range(src, 1, 100)
            wait_until(lambda: pipe()["recordsLag"] == 100, 30, what="lag while cut")
            # Latency is the age of the oldest event read and not yet durable: it keeps growing.
            wait_until(lambda: pipe()["latency"] > 3000, 30, what="latency while cut")
            wait_until(lambda: pipe()["health"] == "warning", 30, what="health warning")
            listed = c.get(f"/pipelines/{ids['pipeline']}").json()["result"][0]
            assert listed["health"] in ("warning", "critical")
            wait_until(lambda: pipe()["health"] == "critical", 30, what="health critical")
            got = pipe()
            assert got["latency"] >= 8000 and got["recordsLag"] == 100
            assert got["recordsWritten"] == 0
            proxy.restore()
            wait_until(lambda: pipe()["recordsLag"] == 0, 90, what="lag back to 0")
            wait_until(lambda: pipe()["health"] == "healthy", 30, what="healthy again")
            got = pipe()
            assert got["recordsWritten"] == 100 and got["retries"] >= 1
            assert got["latency"] < 3000
    finally:
        proxy.stop()
    log = server.log_path.read_text() if server.log_path else ""
    unit = f"pipeline:{ids['pipeline']}"
    for step in ("healthy → warning", "warning → critical", "critical → healthy"):
        assert log.count(f"{unit} health {step}") == 1, step


def test_retained_wal_grows_while_paused(server: Server, dbs: tuple[str, str]) -> None:
    src, dst = dbs
    with server.client() as c:
        ids = setup(c, src, dst)

        def wal() -> float:
            d = c.get(f"/sources/{ids['source']}/metrics").json()["data"]
            return float(d["retainedWalBytes"])

        wait_until(lambda: wal() < 1_000_000, 30, what="a small retained WAL at first")
        c.post(f"/pipelines/{ids['pipeline']}/pause").raise_for_status()
        api.wait_status(c, "pipelines", ids["pipeline"], "Paused")
        base = wal()
        workload.insert_range(src, 1, 5000)
        wait_until(lambda: wal() > base + 1_000_000, 30, what="retained WAL to grow")
        grown = wal()
        c.post(f"/pipelines/{ids['pipeline']}/resume").raise_for_status()
        wait_until(lambda: wal() < grown / 2, 60, what="retained WAL to fall after resume")
