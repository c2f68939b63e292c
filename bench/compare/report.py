"""Summary, goals and the Markdown table of a comparison run.

A contender's figure for a workload is the median over its repetitions, and only when every
repetition was verified: one run that lost data marks the contender as failed for that
workload (``None`` in the summary, listed under ``failed``).
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

Runs = list[dict[str, Any]]


def _get(run: dict[str, Any], key: str) -> Any:
    """``run[key]``, where a dotted key reaches into nested dicts (``latency_ms.p99``)."""
    value: Any = run
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def median(runs: Runs, contender: str, key: str) -> float | None:
    mine = [r for r in runs if r["contender"] == contender]
    if not mine or not all(r["ok"] for r in mine):
        return None
    values = [v for r in mine if (v := _get(r, key)) is not None]
    return round(statistics.median(values), 2) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def failures(runs: dict[str, Runs]) -> list[str]:
    return sorted(
        {f"{workload}: {r['contender']} ({r['detail']})" for workload, rs in runs.items()
         for r in rs if not r["ok"]}
    )  # fmt: skip


def summarize(runs: dict[str, Runs]) -> dict[str, Any]:
    s: dict[str, Any] = {"throughput_events_per_s": {}, "cpu_us_per_event": {}}
    for workload in ("large_tx", "single_row_tx"):
        rs = runs.get(workload, [])
        if not rs:
            continue
        rate = {c: median(rs, c, "events_per_s") for c in ("tideflow", "debezium", "recvlogical")}
        s["throughput_events_per_s"][workload] = rate
        s["cpu_us_per_event"][workload] = {
            c: median(rs, c, "cpu_us_per_event") for c in ("tideflow", "debezium")
        }
        suffix = "" if workload == "large_tx" else "_single_row_tx"
        s[f"throughput_ratio_vs_debezium{suffix}"] = ratio(rate["tideflow"], rate["debezium"])
        s[f"throughput_ratio_vs_recvlogical{suffix}"] = ratio(rate["tideflow"], rate["recvlogical"])
    binlog = runs.get("mariadb", [])
    if binlog:
        rate = {c: median(binlog, c, "events_per_s") for c in ("tideflow", "debezium")}
        s["throughput_events_per_s"]["mariadb"] = rate
        s["cpu_us_per_event"]["mariadb"] = {
            c: median(binlog, c, "cpu_us_per_event") for c in ("tideflow", "debezium")
        }
        s["throughput_ratio_vs_debezium_mariadb"] = ratio(rate["tideflow"], rate["debezium"])
    lat = runs.get("latency", [])
    if lat:
        s["latency_reps"] = len({r.get("rep", 0) for r in lat})
        s["latency_ms"] = {
            c: {q: median(lat, c, f"latency_ms.{q}") for q in ("p50", "p95", "p99", "max")}
            for c in ("tideflow", "debezium")
        }
        s["p99_latency_ms"] = {c: q["p99"] for c, q in s["latency_ms"].items()}
    snap = runs.get("snapshot", [])
    if snap:
        s.update(snapshot_summary(snap))
    rss = runs.get("peak_rss", [])
    if rss:
        s["peak_rss_mb"] = {r["contender"]: (r["peak_rss_mb"] if r["ok"] else None) for r in rss}
    s["failed"] = failures(runs)
    s["goals"] = goals(s)
    return s


def snapshot_summary(snap: Runs) -> dict[str, Any]:
    """Wall times of the snapshot workload, and Debezium's at the same row count: measured
    when it copied the whole table, otherwise extrapolated from a smaller table as its start-up
    (start command to first message) plus the rows at its steady rate (first to last message)."""
    wall = {
        c: median(snap, c, "wall_s")
        for c in ("pg_dump_psql", "tideflow_to_postgres", "tideflow_to_kafka", "debezium_to_kafka")
    }
    rows = next(r["rows"] for r in snap if r["contender"] == "tideflow_to_kafka")
    dbz = [r for r in snap if r["contender"] == "debezium_to_kafka"]
    dbz_rows = dbz[0]["rows"] if dbz else rows
    out: dict[str, Any] = {
        "snapshot_wall_s": wall,
        "snapshot_rows": rows,
        "snapshot_ratio_vs_pg_dump": ratio(wall["tideflow_to_postgres"], wall["pg_dump_psql"]),
    }
    dbz_wall = wall["debezium_to_kafka"]
    if dbz_rows != rows:
        startup = median(snap, "debezium_to_kafka", "first_message_s")
        rate = median(snap, "debezium_to_kafka", "events_per_s_first_to_last")
        dbz_wall = round(startup + rows / rate, 1) if startup is not None and rate else None
        out["snapshot_debezium_extrapolated"] = {
            "rows_measured": dbz_rows,
            "wall_s_measured": wall["debezium_to_kafka"],
            "startup_s": startup,
            "rows_per_s": rate,
            "wall_s_at_snapshot_rows": dbz_wall,
            "method": "start-up (start command to first message) + snapshot_rows / rows_per_s "
            "(first to last message), both measured on the smaller table in this run",
        }
    out["snapshot_debezium_wall_s"] = dbz_wall
    out["snapshot_ratio_vs_debezium"] = ratio(wall["tideflow_to_kafka"], dbz_wall)
    return out


def _goal(text: str, measured: float | None, target: float, *, at_most: bool) -> dict[str, Any]:
    met = None if measured is None else (measured <= target if at_most else measured >= target)
    return {"goal": text, "measured": measured, "target": target, "met": met}


def _lowest(*values: float | None) -> float | None:
    """The worse of the streaming workloads that were measured decides a throughput goal."""
    present = [v for v in values if v is not None]
    return min(present) if present else None


def goals(s: dict[str, Any]) -> list[dict[str, Any]]:
    p99 = s.get("p99_latency_ms", {})
    rss = s.get("peak_rss_mb", {})
    tf_p99, dbz_p99 = p99.get("tideflow"), p99.get("debezium")
    tf_rss, dbz_rss = rss.get("tideflow"), rss.get("debezium")
    return [
        _goal(
            "streaming PG → Kafka ≥ 3x Debezium Server (both workloads)",
            _lowest(
                s.get("throughput_ratio_vs_debezium"),
                s.get("throughput_ratio_vs_debezium_single_row_tx"),
            ),
            3.0,
            at_most=False,
        ),
        _goal(
            "streaming ≥ 60 % of pg_recvlogical on the same stream (both workloads)",
            _lowest(
                s.get("throughput_ratio_vs_recvlogical"),
                s.get("throughput_ratio_vs_recvlogical_single_row_tx"),
            ),
            0.6,
            at_most=False,
        ),
        _goal(
            "p99 latency at 5,000 rows/s ≤ Debezium Server's (ratio)",
            ratio(tf_p99, dbz_p99),
            1.0,
            at_most=True,
        ),
        _goal("p99 latency at 5,000 rows/s ≤ 250 ms", tf_p99, 250.0, at_most=True),
        _goal(
            "snapshot wall time ≤ 1.0x pg_dump | psql",
            s.get("snapshot_ratio_vs_pg_dump"),
            1.0,
            at_most=True,
        ),
        _goal(
            "snapshot wall time ≤ 1/5 of Debezium's initial snapshot"
            + (" (Debezium's extrapolated)" if s.get("snapshot_debezium_extrapolated") else ""),
            s.get("snapshot_ratio_vs_debezium"),
            0.2,
            at_most=True,
        ),
        _goal("peak RSS ≤ 300 MB", tf_rss, 300.0, at_most=True),
        _goal("peak RSS ≤ Debezium Server's (ratio)", ratio(tf_rss, dbz_rss), 1.0, at_most=True),
    ]


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and v >= 100:
        v = round(v)
    if isinstance(v, int | float) and abs(v) >= 1000:
        return f"{v:,.0f}{unit}"
    return f"{v}{unit}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def profile_top(path: Path, n: int = 15) -> list[dict[str, Any]]:
    """The ``n`` functions with the most self samples in a py-spy speedscope file."""
    doc = json.loads(path.read_text())
    frames = doc["shared"]["frames"]
    self_samples: Counter[tuple[str, str]] = Counter()
    total = 0
    for prof in doc["profiles"]:
        for stack, weight in zip(prof["samples"], prof["weights"], strict=True):
            if stack:
                frame = frames[stack[-1]]
                self_samples[frame["name"], frame.get("file", "")] += weight
                total += weight
    return [
        {"function": name, "file": file, "self_share": round(w / total, 3)}
        for (name, file), w in self_samples.most_common(n)
    ]


def markdown(results: dict[str, Any]) -> str:
    s = results["summary"]
    rows: list[tuple[str, Any, Any, Any, Any]] = []
    streams = (
        ("large_tx", "PG → Kafka, large transactions", ""),
        ("single_row_tx", "PG → Kafka, single-row tx", "_single_row_tx"),
        ("mariadb", "MariaDB binlog → Kafka, mixed", "_mariadb"),
    )
    for workload, label, suffix in streams:
        rate = s["throughput_events_per_s"].get(workload)
        if rate:
            versus = f"{_fmt(s[f'throughput_ratio_vs_debezium{suffix}'])}x Debezium"
            if "recvlogical" in rate:
                versus += f", {_fmt(s[f'throughput_ratio_vs_recvlogical{suffix}'])}x recvlogical"
            rows.append(
                (f"{label} (events/s)", rate["tideflow"], rate["debezium"],
                 rate.get("recvlogical"), versus)
            )  # fmt: skip
            cpu = s["cpu_us_per_event"][workload]
            rows.append(
                (
                    f"  CPU µs per event, {label}",
                    cpu["tideflow"],
                    cpu["debezium"],
                    None,
                    f"{_fmt(ratio(cpu['tideflow'], cpu['debezium']))}x Debezium",
                )
            )
    lat = s.get("latency_ms")
    if lat:
        for q in ("p50", "p95", "p99"):
            tf = (lat.get("tideflow") or {}).get(q)
            dbz = (lat.get("debezium") or {}).get(q)
            rows.append((f"latency at 5,000 rows/s, {q} (ms, median of {s['latency_reps']})",
                         tf, dbz, None,
                         f"{_fmt(ratio(tf, dbz))}x Debezium"))  # fmt: skip
    wall = s.get("snapshot_wall_s")
    if wall:
        rows.append(
            (
                f"snapshot {s['snapshot_rows']:,} rows → Postgres (s)",
                wall["tideflow_to_postgres"],
                None,
                wall["pg_dump_psql"],
                f"{_fmt(s['snapshot_ratio_vs_pg_dump'])}x pg_dump | psql",
            )
        )
        extra = s.get("snapshot_debezium_extrapolated")
        label = f"snapshot {s['snapshot_rows']:,} rows → Kafka (s)"
        if extra:
            label += (
                f"; Debezium extrapolated from {extra['rows_measured']:,} rows "
                f"({_fmt(extra['wall_s_measured'])} s measured, start-up "
                f"{_fmt(extra['startup_s'])} s, {_fmt(extra['rows_per_s'])} rows/s)"
            )
        rows.append(
            (
                label,
                wall["tideflow_to_kafka"],
                s["snapshot_debezium_wall_s"],
                None,
                f"{_fmt(s['snapshot_ratio_vs_debezium'])}x Debezium"
                + (" (extrapolated)" if extra else ""),
            )
        )
    rss = s.get("peak_rss_mb")
    if rss:
        big = results["args"]["big_tx"]
        rows.append(
            (
                f"peak RSS, one {big:,}-row transaction (MB)",
                rss.get("tideflow"),
                rss.get("debezium"),
                None,
                f"{_fmt(ratio(rss.get('tideflow'), rss.get('debezium')))}x Debezium",
            )
        )
    out = [
        "| figure | Tideflow | Debezium Server | limit (pg_recvlogical / pg_dump) | ratio |",
        "|---|---|---|---|---|",
    ]
    out += [
        f"| {_cell(a)} | {_fmt(b)} | {_fmt(c)} | {_fmt(d)} | {_cell(e)} |" for a, b, c, d, e in rows
    ]
    out += ["", "| goal | measured | target | met |", "|---|---|---|---|"]
    for g in s["goals"]:
        met = {True: "yes", False: "no", None: "not measured"}[g["met"]]
        out.append(f"| {_cell(g['goal'])} | {_fmt(g['measured'])} | {g['target']} | {met} |")
    if s["failed"]:
        out += ["", "Failed (data not verified at the sink): " + "; ".join(s["failed"])]
    return "\n".join(out) + "\n"
