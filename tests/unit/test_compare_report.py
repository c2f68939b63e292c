"""The side-by-side benchmark's summary (bench/compare/report.py) and sink normalisation."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from bench.compare import report, verify


def stream_runs(tideflow: int, debezium: int, recvlogical: int | None) -> list[dict[str, Any]]:
    runs = []
    for rep, scale in enumerate((1.0, 0.5, 2.0)):
        for name, rate in (("tideflow", tideflow), ("debezium", debezium)):
            runs.append(
                {"contender": name, "rep": rep, "ok": True, "events_per_s": rate * scale,
                 "cpu_us_per_event": 10.0}
            )  # fmt: skip
        if recvlogical:
            runs.append(
                {"contender": "recvlogical", "rep": rep, "ok": True,
                 "events_per_s": recvlogical * scale}
            )  # fmt: skip
    return runs


def latency_runs() -> list[dict[str, Any]]:
    p99 = {"tideflow": (80.0, 300.0, 90.0), "debezium": (120.0, 100.0, 5000.0)}
    return [
        {"contender": name, "rep": rep, "ok": True,
         "latency_ms": {"p50": 10.0, "p95": 50.0, "p99": values[rep], "max": 900.0}}
        for name, values in p99.items() for rep in range(3)
    ]  # fmt: skip


def snapshot_runs(debezium_rows: int) -> list[dict[str, Any]]:
    return [
        {"contender": "pg_dump_psql", "rows": 5_000_000, "ok": True, "wall_s": 40.0},
        {"contender": "tideflow_to_postgres", "rows": 5_000_000, "ok": True, "wall_s": 44.0},
        {"contender": "tideflow_to_kafka", "rows": 5_000_000, "ok": True, "wall_s": 100.0},
        {"contender": "debezium_to_kafka", "rows": debezium_rows, "ok": True, "wall_s": 120.0,
         "first_message_s": 20.0, "events_per_s_first_to_last": 10_000},
    ]  # fmt: skip


def full_runs() -> dict[str, list[dict[str, Any]]]:
    return {
        "large_tx": stream_runs(30_000, 10_000, 40_000),
        "single_row_tx": stream_runs(20_000, 5_000, 15_000),
        "mariadb": stream_runs(40_000, 8_000, None),
        "latency": latency_runs(),
        "snapshot": snapshot_runs(1_000_000),
        "peak_rss": [
            {"contender": "tideflow", "ok": True, "peak_rss_mb": 200.0},
            {"contender": "debezium", "ok": True, "peak_rss_mb": 1600.0},
        ],
    }


def test_every_goal_is_decided_when_every_workload_ran() -> None:
    s = report.summarize(full_runs())
    assert [g["met"] for g in s["goals"]] == [True, True, True, True, False, True, True, True]
    assert s["throughput_ratio_vs_debezium"] == 3.0
    assert s["throughput_ratio_vs_recvlogical_single_row_tx"] == 1.333
    assert s["throughput_ratio_vs_debezium_mariadb"] == 5.0
    assert s["failed"] == []
    assert "MariaDB binlog → Kafka" in report.markdown(
        {"summary": s, "args": {"big_tx": 2_000_000}}
    )


def test_latency_is_the_median_of_the_repetitions() -> None:
    s = report.summarize({"latency": latency_runs()})
    assert s["latency_reps"] == 3
    assert s["p99_latency_ms"] == {"tideflow": 90.0, "debezium": 120.0}


def test_a_run_that_lost_data_fails_its_contender() -> None:
    runs = full_runs()
    runs["mariadb"][1] = {**runs["mariadb"][1], "ok": False, "detail": "d: 3 of 5 events"}
    s = report.summarize(runs)
    assert s["throughput_events_per_s"]["mariadb"]["debezium"] is None
    assert s["throughput_ratio_vs_debezium_mariadb"] is None
    assert s["failed"] == ["mariadb: debezium (d: 3 of 5 events)"]


def test_debezium_snapshot_of_a_smaller_table_is_extrapolated_and_labelled() -> None:
    s = report.summarize({"snapshot": snapshot_runs(1_000_000)})
    # 20 s start-up + 5M rows at 10,000 rows/s
    assert s["snapshot_debezium_wall_s"] == 520.0
    assert s["snapshot_ratio_vs_debezium"] == round(100 / 520, 3)
    assert s["snapshot_debezium_extrapolated"]["rows_measured"] == 1_000_000
    assert "extrapolated" in s["goals"][5]["goal"]


def test_debezium_snapshot_of_the_whole_table_is_measured() -> None:
    s = report.summarize({"snapshot": snapshot_runs(5_000_000)})
    assert s["snapshot_debezium_wall_s"] == 120.0
    assert "snapshot_debezium_extrapolated" not in s


WALL_CLOCK = dt.datetime(2026, 11, 22, 10, 0, 0, 123456)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(int((WALL_CLOCK - verify.NAIVE_EPOCH).total_seconds() * 10**6), id="epoch-us"),
        pytest.param("2026-11-22T10:00:00.123456", id="iso-naive"),
        pytest.param("2026-11-22T10:00:00.123456Z", id="iso-utc"),
        pytest.param(WALL_CLOCK, id="datetime"),
    ],
)
def test_mariadb_datetime_normalises_to_the_wall_clock(value: Any) -> None:
    assert verify.normalise(value, "dt") == WALL_CLOCK
