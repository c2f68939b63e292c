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


def median(runs: Runs, contender: str, key: str) -> float | None:
    mine = [r for r in runs if r["contender"] == contender]
    if not mine or not all(r["ok"] for r in mine):
        return None
    values = [r[key] for r in mine if r.get(key) is not None]
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
    lat = {r["contender"]: r for r in runs.get("latency", [])}
    if lat:
        s["latency_ms"] = {c: r.get("latency_ms") if r["ok"] else None for c, r in lat.items()}
        s["p99_latency_ms"] = {
            c: (r["latency_ms"]["p99"] if r["ok"] and r.get("latency_ms") else None)
            for c, r in lat.items()
        }
    snap = runs.get("snapshot", [])
    if snap:
        wall = {
            c: median(snap, c, "wall_s")
            for c in ("pg_dump_psql", "tideflow_to_postgres", "tideflow_to_kafka",
                      "debezium_to_kafka")
        }  # fmt: skip
        s["snapshot_wall_s"] = wall
        s["snapshot_rows"] = snap[0]["rows"]
        s["snapshot_ratio_vs_pg_dump"] = ratio(wall["tideflow_to_postgres"], wall["pg_dump_psql"])
        s["snapshot_ratio_vs_debezium"] = ratio(
            wall["tideflow_to_kafka"], wall["debezium_to_kafka"]
        )
    rss = runs.get("peak_rss", [])
    if rss:
        s["peak_rss_mb"] = {r["contender"]: (r["peak_rss_mb"] if r["ok"] else None) for r in rss}
    s["failed"] = failures(runs)
    s["goals"] = goals(s)
    return s


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
            "snapshot wall time ≤ 1/5 of Debezium's initial snapshot",
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
    for workload, label in (("large_tx", "large transactions"), ("single_row_tx", "single-row tx")):
        rate = s["throughput_events_per_s"].get(workload)
        if rate:
            suffix = "" if workload == "large_tx" else "_single_row_tx"
            rows.append(
                (
                    f"PG → Kafka, {label} (events/s)",
                    rate["tideflow"],
                    rate["debezium"],
                    rate["recvlogical"],
                    f"{_fmt(s[f'throughput_ratio_vs_debezium{suffix}'])}x Debezium, "
                    f"{_fmt(s[f'throughput_ratio_vs_recvlogical{suffix}'])}x recvlogical",
                )
            )
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
            rows.append((f"latency at 5,000 rows/s, {q} (ms)", tf, dbz, None,
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
        rows.append(
            (
                f"snapshot {s['snapshot_rows']:,} rows → Kafka (s)",
                wall["tideflow_to_kafka"],
                wall["debezium_to_kafka"],
                None,
                f"{_fmt(s['snapshot_ratio_vs_debezium'])}x Debezium",
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
