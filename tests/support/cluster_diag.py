"""What a cluster end-to-end test prints when a destination does not converge: who holds
which unit, the lease history, checkpoints, each pipeline's Kafka progress and the rows that
differ between a source and its destination (so a stall and a stale change can be told apart).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import psycopg
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import OffsetSpec

from tests.support import kafka, pg, workload

LIMIT = 20  # differing rows shown per table


def report(meta: str, pairs: list[tuple[str, str]], sources: list[str]) -> str:
    out: list[str] = []
    with contextlib.suppress(Exception):
        out += _store(meta)
    for sid in sources:
        try:
            out += _kafka(meta, sid)
        except Exception as exc:  # diagnostics must never hide the original failure
            out.append(f"kafka progress of {sid}: {exc!r}")
    for (src, dst), sid in zip(pairs, sources, strict=False):
        try:
            lines, ids = row_diff(src, dst)
            out += lines
            if ids:
                out += log_history(f"tideflow.{sid}.public.items", ids[:5])
        except Exception as exc:
            out.append(f"row diff {src} -> {dst}: {exc!r}")
    return "\n".join(out)


def _rows(meta: str, title: str, sql: str) -> list[str]:
    with psycopg.connect(pg.dsn(meta), autocommit=True) as conn:
        rows = conn.execute(sql).fetchall()
    return [f"--- {title}", *(" | ".join(map(str, r)) for r in rows)]


def _store(meta: str) -> list[str]:
    return [
        *_rows(
            meta,
            "leases",
            "SELECT kind, unit_id, owner, generation, expires_at - now(), renewed_at "
            "FROM leases ORDER BY kind, unit_id",
        ),
        *_rows(meta, "workers", "SELECT * FROM workers ORDER BY 1"),
        *_rows(
            meta,
            "lease events",
            "SELECT id, at, kind, unit_id, event, owner, generation FROM lease_events ORDER BY id",
        ),
        *_rows(meta, "unit status", "SELECT * FROM unit_status ORDER BY unit"),
        *_rows(
            meta, "checkpoints", "SELECT unit, generation, updated_at, position FROM checkpoints"
        ),
    ]


def _kafka(meta: str, source_id: str) -> list[str]:
    with psycopg.connect(pg.dsn(meta), autocommit=True) as conn:
        pipes = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM pipelines WHERE source_id = %s", (source_id,)
            ).fetchall()
        ]
    client = kafka.admin()
    prefix = f"tideflow.{source_id}."
    tps = [
        TopicPartition(name, p)
        for name, m in client.list_topics(timeout=10).topics.items()
        if name.startswith(prefix)
        for p in m.partitions
    ]
    if not tps:
        return [f"--- kafka {source_id}: no topics"]
    ends = {
        (tp.topic, tp.partition): f.result().offset
        for tp, f in client.list_offsets({tp: OffsetSpec.latest() for tp in tps}).items()
    }
    out = [f"--- kafka {source_id}: log end offsets {ends}"]
    for pid in pipes:
        group = f"tideflow-pipeline-{pid}"
        futures = client.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group, tps)])
        got = futures[group].result(timeout=30)
        committed = {(tp.topic, tp.partition): tp.offset for tp in got.topic_partitions}
        out.append(f"group {group}: committed {committed}")
    return out


def row_diff(src: str, dst: str) -> tuple[list[str], list[Any]]:
    """The ids whose normalised rows differ (missing, extra, different columns)."""
    if workload.checksum(src) == workload.checksum(dst):
        return [f"--- {dst} equals {src}"], []
    a, b = _table(src, lsn=False), _table(dst, lsn=True)
    missing = sorted(set(a) - set(b))
    extra = sorted(set(b) - set(a))
    changed = sorted(k for k in set(a) & set(b) if a[k][0] != b[k][0])
    out = [
        f"--- {dst} differs from {src}: {len(a)} vs {len(b)} rows, "
        f"missing {len(missing)}, extra {len(extra)}, different {len(changed)}"
    ]
    for k in missing[:LIMIT]:
        out.append(f"missing id {k}: {a[k][0]}")
    for k in extra[:LIMIT]:
        out.append(f"extra id {k} (lsn {b[k][1]}): {b[k][0]}")
    for k in changed[:LIMIT]:
        cols = [c for c in a[k][0] if a[k][0][c] != b[k][0].get(c)]
        shown = {c: (a[k][0][c], b[k][0].get(c)) for c in cols}
        out.append(f"different id {k} (dst lsn {b[k][1]}): source/destination {shown}")
    return out, [*missing[:LIMIT], *extra[:LIMIT], *changed[:LIMIT]]


def log_history(topic: str, ids: list[Any]) -> list[str]:
    """Every message of ``ids`` in the log topic, in log order: offset, op, LSN, a few values."""
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.BOOTSTRAP,
            "group.id": kafka.unique("diag"),
            "enable.auto.commit": False,
        }
    )
    wanted = {int(i) for i in ids}
    out = [f"--- history of ids {sorted(wanted)} in {topic}"]
    try:
        meta = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        idle = 0
        while idle < 3:
            msgs = consumer.consume(500, timeout=1.0)
            idle = 0 if msgs else idle + 1
            for m in msgs:
                if m.error() is not None or m.value() is None:
                    continue
                payload = json.loads(m.value() or b"{}").get("payload") or {}
                row = payload.get("after") or payload.get("before") or {}
                if row.get("id") in wanted:
                    src = payload.get("source") or {}
                    out.append(
                        f"id {row.get('id')} p{m.partition()}@{m.offset()} op {payload.get('op')} "
                        f"lsn {src.get('lsn')} txid {src.get('txId')} i2 {row.get('i2')} "
                        f"i4 {row.get('i4')} t {row.get('t')!r} big {str(row.get('big'))[:12]!r}"
                    )
    finally:
        consumer.close()
    return out


def _table(dbname: str, *, lsn: bool) -> dict[Any, tuple[dict[str, Any], Any]]:
    extra = ", __source_lsn" if lsn else ", NULL"
    with psycopg.connect(pg.dsn(dbname)) as conn:
        cur = conn.execute(f"SELECT {workload.COLUMNS}{extra} FROM public.items")
        names = [d.name for d in (cur.description or [])][:-1]
        return {r[0]: (dict(zip(names, r[:-1], strict=True)), r[-1]) for r in cur.fetchall()}
