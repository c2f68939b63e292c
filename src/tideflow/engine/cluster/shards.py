"""Sharded pipelines: one pipeline's destination writes spread over several workers by Kafka
partition (``docs/cluster.md#sharded-pipelines``, ADR 0004).

A pipeline with the setting ``cluster.shards`` = N > 1 (in its ``destination`` object, next to
``poison.policy``) runs in log mode as N pipeline units ``log:<pipeline id>#<k>``, each leased
and fenced on its own. Shard ``k`` reads the partitions ``p`` of the source's topics with
``p mod N == k`` (manual assignment) and keeps its own checkpoint of those partitions' offsets.
The log is keyed by primary key, so one key always lives in one partition and therefore in one
shard: order per key holds (invariant 3). What is not kept is a source transaction's atomicity
across keys in different partitions: it lands as one destination transaction per shard.

Only destinations whose writes are idempotent per key and independent between writers allow
it; the others refuse N > 1 at pipeline create/update (:func:`check`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tideflow.engine.cluster.leases import PIPELINE, aware, db_now
from tideflow.errors import Invalid
from tideflow.store.models.cluster import Lease

KEY = "cluster.shards"
MAX = 32
# Destinations whose concurrent writers need no coordination: Postgres and MySQL upsert and
# delete by key (Postgres with its position guard), the files destination names every file
# with a random per-session writer id, so two shards never write the same name.
SHARDABLE = frozenset({"postgresql", "mysql", "files"})
CODE = "shards_not_supported"


def parse(destination_code: str, body: Mapping[str, Any] | None) -> tuple[int, str | None]:
    """The shard count a pipeline's ``destination`` object asks for, and why it cannot be used
    (None when it can). Absent means 1, so existing pipelines and clients are unaffected."""
    raw = (body or {}).get(KEY, 1)
    if raw is None:
        return 1, None
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        return 1, f"{KEY} must be a whole number from 1 to {MAX}, not {raw!r}"
    try:
        count = int(raw)
    except ValueError:
        return 1, f"{KEY} must be a whole number from 1 to {MAX}, not {raw!r}"
    if not 1 <= count <= MAX:
        return 1, f"{KEY} must be a whole number from 1 to {MAX}, not {raw!r}"
    if count > 1 and destination_code not in SHARDABLE:
        return 1, (
            f"{KEY} = {count}: the {destination_code} destination needs a single writer, so "
            f"its pipeline cannot be split into shards; use 1 (shardable destinations: "
            f"{', '.join(sorted(SHARDABLE))})"
        )
    return count, None


def check(destination_code: str, body: Mapping[str, Any] | None) -> int:
    """:func:`parse` for the API: a bad or unsupported shard count is a 422."""
    count, error = parse(destination_code, body)
    if error is not None:
        raise Invalid(error, code=CODE)
    return count


def owns(partition: int, index: int, count: int) -> bool:
    """Whether shard ``index`` of ``count`` reads ``partition`` (partitions k, k+N, ...)."""
    return partition % count == index


def unit(pipeline_unit: str, index: int) -> str:
    """Lease unit of shard ``index`` of a pipeline unit: ``<pipeline id>#<k>``."""
    return f"{pipeline_unit}#{index}"


def checkpoint_unit(pipeline_checkpoint: str, index: int, count: int) -> str:
    """``pipeline:<id>/log#<k>/<N>``: the count is part of the name, so a shard never resumes
    from a checkpoint written under another layout, whose partitions were not all its own."""
    return f"{pipeline_checkpoint}#{index}/{count}"


def pipeline_of(unit_id: str) -> str:
    """The pipeline unit a lease unit belongs to (itself when not a shard)."""
    return unit_id.partition("#")[0]


def holders(session: Session, pipeline_ids: Iterable[str]) -> dict[str, list[str]]:
    """The workers holding a live lease on a shard of each sharded pipeline, in shard order
    without repeats (what the API shows as ``worker_ids``; ``worker_id`` is the first).
    Pipelines without a held shard lease are left out."""
    wanted = set(pipeline_ids)
    if not wanted:
        return {}
    now = db_now(session)
    rows = session.execute(
        select(Lease.unit_id, Lease.owner, Lease.expires_at).where(
            Lease.kind == PIPELINE, Lease.unit_id.contains("#"), Lease.owner != ""
        )
    )
    found: dict[str, list[tuple[int, str]]] = {}
    for unit_id, owner, expires_at in rows:
        pipeline, _, index = unit_id.partition("#")
        if pipeline in wanted and index.isdigit() and aware(expires_at) > now:
            found.setdefault(pipeline, []).append((int(index), owner))
    return {p: list(dict.fromkeys(o for _, o in sorted(held))) for p, held in found.items()}
