"""Health from thresholds: ``healthy`` (0), ``warning`` (1), ``critical`` (2).

Thresholds come from environment defaults (``TIDEFLOW_ALERT_<NAME>_WARNING`` /
``_CRITICAL``) and, per pipeline, from ``alerts`` in the pipeline's ``destination`` object,
e.g. ``{"alerts": {"latency_ms": {"warning": 5000, "critical": 60000}, "webhook_url": "…"}}``.
A transition is logged once and, when a webhook URL is set (``TIDEFLOW_ALERT_WEBHOOK_URL`` or
per pipeline), POSTed from a background thread with a short timeout — never on the data path.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from typing import Any

log = logging.getLogger(__name__)

HEALTHY, WARNING, CRITICAL = 0, 1, 2
NAMES = {HEALTHY: "healthy", WARNING: "warning", CRITICAL: "critical"}

# metric → (warning, critical) defaults; the metric keys are the stored point names.
DEFAULTS: dict[str, tuple[float, float]] = {
    "latency_ms": (60_000.0, 300_000.0),
    "records_lag": (100_000.0, 1_000_000.0),
    "retained_wal_bytes": (1 << 30, 10 << 30),
    "error_rate_per_minute": (1.0, 10.0),
    # cluster log mode: oldest unconsumed change's age / the topic's retention.ms
    "log_retention_used": (0.8, 0.95),
}


def thresholds(body: dict[str, Any] | None = None) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    custom = (body or {}).get("alerts") or {}
    for name, (warn, crit) in DEFAULTS.items():
        env = name.upper()
        warn = _num(os.environ.get(f"TIDEFLOW_ALERT_{env}_WARNING"), warn)
        crit = _num(os.environ.get(f"TIDEFLOW_ALERT_{env}_CRITICAL"), crit)
        mine = custom.get(name) if isinstance(custom, dict) else None
        if isinstance(mine, dict):
            warn = _num(mine.get("warning"), warn)
            crit = _num(mine.get("critical"), crit)
        out[name] = (warn, crit)
    return out


def _num(value: Any, default: float) -> float:
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def level(values: dict[str, float], limits: dict[str, tuple[float, float]]) -> tuple[int, str]:
    """The worst level over the metrics present, and why."""
    worst, why = HEALTHY, ""
    for name, (warn, crit) in limits.items():
        v = values.get(name)
        if v is None:
            continue
        got = CRITICAL if v >= crit else WARNING if v >= warn else HEALTHY
        if got > worst:
            worst, why = got, f"{name}={v:g} ≥ {crit if got == CRITICAL else warn:g}"
    return worst, why


class HealthTracker:
    """Remembers each unit's level and error totals; reports transitions once."""

    def __init__(self) -> None:
        self.levels: dict[str, int] = {}
        self._errors: dict[str, deque[tuple[float, float]]] = {}

    def rate(self, unit: str, total: float) -> float:
        """Errors per minute over (up to) the last minute of running totals."""
        now = time.monotonic()
        window = self._errors.setdefault(unit, deque())
        window.append((now, total))
        while len(window) > 1 and now - window[0][0] > 60:
            window.popleft()
        first = window[0][1]
        return max(0.0, total - first) if total >= first else total

    def evaluate(
        self, unit: str, values: dict[str, float], error_rate: float, body: dict[str, Any] | None
    ) -> int:
        limits = thresholds(body)
        got, why = level({**values, "error_rate_per_minute": error_rate}, limits)
        before = self.levels.get(unit, HEALTHY)
        self.levels[unit] = got
        if got != before:
            log.warning(
                "%s health %s → %s%s",
                unit,
                NAMES[before],
                NAMES[got],
                f" ({why})" if why else "",
                extra={"unit": unit},
            )
            url = ((body or {}).get("alerts") or {}).get("webhook_url") if body else None
            url = url or os.environ.get("TIDEFLOW_ALERT_WEBHOOK_URL")
            if url:
                payload = {
                    "unit": unit,
                    "from": NAMES[before],
                    "to": NAMES[got],
                    "reason": why,
                    "values": values,
                    "at": time.time(),
                }
                threading.Thread(target=_post, args=(str(url), payload), daemon=True).start()
        return got


def _post(url: str, payload: dict[str, Any]) -> None:
    try:
        import httpx

        httpx.post(url, json=payload, timeout=3.0)
    except Exception as exc:
        log.warning("alert webhook %s failed: %s", url, exc)
