"""Health levels from thresholds and transitions logged once (engine/alerts.py)."""

from __future__ import annotations

import logging

import pytest

from tideflow.engine import alerts


def test_thresholds_from_defaults_env_and_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    assert alerts.thresholds()["latency_ms"] == (60_000, 300_000)
    monkeypatch.setenv("TIDEFLOW_ALERT_LATENCY_MS_WARNING", "3000")
    monkeypatch.setenv("TIDEFLOW_ALERT_RECORDS_LAG_CRITICAL", "not a number")
    got = alerts.thresholds({"alerts": {"latency_ms": {"critical": 9000}}})
    assert got["latency_ms"] == (3000, 9000)
    assert got["records_lag"] == (100_000, 1_000_000)


def test_level_is_the_worst_metric() -> None:
    limits = {"latency_ms": (10.0, 20.0), "records_lag": (5.0, 50.0)}
    assert alerts.level({}, limits) == (alerts.HEALTHY, "")
    assert alerts.level({"latency_ms": 10}, limits)[0] == alerts.WARNING
    level, why = alerts.level({"latency_ms": 12, "records_lag": 60}, limits)
    assert level == alerts.CRITICAL and why == "records_lag=60 ≥ 50"


def test_each_transition_is_logged_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TIDEFLOW_ALERT_WEBHOOK_URL", raising=False)
    body = {"alerts": {"latency_ms": {"warning": 1000, "critical": 5000}}}
    tracker = alerts.HealthTracker()
    caplog.set_level(logging.WARNING, logger="tideflow.engine.alerts")
    levels = [
        tracker.evaluate("pipeline:p", {"latency_ms": ms}, 0.0, body)
        for ms in (10, 1500, 2000, 6000, 7000, 200, 100)
    ]
    assert levels == [0, 1, 1, 2, 2, 0, 0]
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "pipeline:p health healthy → warning (latency_ms=1500 ≥ 1000)",
        "pipeline:p health warning → critical (latency_ms=6000 ≥ 5000)",
        "pipeline:p health critical → healthy",
    ]


def test_error_rate_over_the_last_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr("tideflow.engine.alerts.time.monotonic", lambda: clock[0])
    tracker = alerts.HealthTracker()
    assert tracker.rate("u", 3) == 0  # the first total is the baseline
    clock[0] += 30
    assert tracker.rate("u", 5) == 2
    clock[0] += 45  # the baseline is now more than a minute old
    assert tracker.rate("u", 5) == 0
    clock[0] += 1
    assert tracker.rate("u", 1) == 1  # a drop is a restart: count the new total
