"""Snapshot rules: requests, cancellation, status and progress (no web framework here).

A request becomes one ``snapshot_tables`` row per table, status ``pending``; the source's
runtime (``tideflow.engine.snapshot``) picks it up at once when it runs in this process (a
nudge, :mod:`tideflow.engine.snapshot.nudge`) and within a second from another process, marks
it ``running`` and moves its progress only after the rows are durable. Only one snapshot may
be active per source (409). Filters are checked twice: tokenized here (they cannot escape
their WHERE clause) and compiled against the table in a READ ONLY transaction when the source
database is reachable; a broken filter is a 422, never a failed snapshot later.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tideflow.connectors import registry
from tideflow.connectors.config import validate
from tideflow.control.resources import configs
from tideflow.control.resources.snapshots.schemas import (
    BulkIn,
    BulkOut,
    BulkSourceResult,
    CancelIn,
    Condition,
    SnapshotIn,
    SnapshotOut,
    TopicSnapshot,
)
from tideflow.control.resources.sources.service import topic_id, topic_names
from tideflow.engine.snapshot import filters, nudge
from tideflow.engine.snapshot.progress import ACTIVE, BLOCKING, CANCELLED, COMPLETED, PENDING
from tideflow.engine.snapshot.reader import ChunkReader, SnapshotError
from tideflow.errors import ApiError, Conflict, Invalid, NotFound
from tideflow.ids import new_id
from tideflow.store.crypto import reveal_config
from tideflow.store.models.resources import Pipeline, Source, Topic
from tideflow.store.models.runtime import SnapshotTable

if TYPE_CHECKING:
    from tideflow.control.context import AppContext
    from tideflow.store.crypto import SecretBox

log = logging.getLogger(__name__)


def request(ctx: AppContext, body: SnapshotIn) -> SnapshotOut:
    with ctx.store.session() as s:
        source = _source(s, body.source_id)
        tables = _tables(s, source, body.topic_names)
        _refuse_if_active(s, source.id)
        config = dict(source.config)
    conditions = _conditions(body.additional_conditions, tables)
    if body.snapshot_type == BLOCKING and conditions:
        raise Invalid("a blocking snapshot copies whole tables: additional_conditions not allowed")
    _check_against_source(ctx.secrets, source.connector, config, tables, conditions, body)
    with ctx.store.session() as s:
        _refuse_if_active(s, body.source_id)  # a concurrent request may have won meanwhile
        request_id = _add(s, body.source_id, tables, body.snapshot_type, conditions, body)
    nudge.nudge(body.source_id)
    return status(ctx, body.source_id, request_id)


def cancel(ctx: AppContext, body: CancelIn) -> SnapshotOut:
    with ctx.store.session() as s:
        source = _source(s, body.source_id)
        query = select(SnapshotTable).where(
            SnapshotTable.source_id == source.id, SnapshotTable.status.in_(ACTIVE)
        )
        if body.topic_names:
            query = query.where(SnapshotTable.table.in_(_qualified(body.topic_names)))
        now = datetime.now(UTC)
        for row in s.scalars(query):
            row.status, row.finished_at, row.message = CANCELLED, now, "cancelled by request"
    nudge.nudge(body.source_id)
    return status(ctx, body.source_id)


def bulk(ctx: AppContext, body: BulkIn) -> BulkOut:
    """Snapshot topics of possibly several sources: one result per source."""
    by_source: dict[str, list[str]] = defaultdict(list)
    results: list[BulkSourceResult] = []
    with ctx.store.session() as s:
        topics = {t.id: t for t in s.scalars(select(Topic).where(Topic.id.in_(body.topic_ids)))}
    for tid in body.topic_ids:
        topic = topics.get(tid)
        if topic is None:
            results.append(
                BulkSourceResult(
                    source_id="", ok=False, status_code=404, message=f"topic {tid} not found"
                )
            )
            continue
        by_source[topic.source_id].append(topic.name)
    for source_id, names in by_source.items():
        try:
            out = request(
                ctx,
                SnapshotIn(
                    source_id=source_id, topic_names=names, snapshot_type=body.snapshot_type
                ),
            )
            results.append(
                BulkSourceResult(source_id=source_id, ok=True, status_code=202, snapshot=out)
            )
        except ApiError as exc:
            results.append(
                BulkSourceResult(
                    source_id=source_id, ok=False, status_code=exc.status, message=exc.message
                )
            )
    ok = sum(1 for r in results if r.ok)
    summary = {"requested": len(results), "started": ok, "failed": len(results) - ok}
    return BulkOut(results=results, summary=summary)


def status(ctx: AppContext, source_id: str, request_id: str | None = None) -> SnapshotOut:
    """The latest snapshot of each table of the source (or of one request) with progress."""
    with ctx.store.session() as s:
        _source(s, source_id)
        query = select(SnapshotTable).where(SnapshotTable.source_id == source_id)
        if request_id is not None:
            query = query.where(SnapshotTable.request_id == request_id)
        rows = _latest_per_table(s.scalars(query).all())
        topics = [_present(r) for r in rows]
        latest = max(rows, key=lambda r: r.submitted_at).request_id if rows else None
    statuses = {t.status for t in topics}
    if not topics:
        overall = "none"
    elif statuses & set(ACTIVE):
        overall = "running"
    elif len(statuses) == 1:
        overall = statuses.pop()
    else:
        overall = "mixed"
    return SnapshotOut(
        source_id=source_id, request_id=request_id or latest, status=overall, topics=topics
    )


def source_snapshot_metrics(ctx_or_session: AppContext | Session, source_id: str) -> dict[str, Any]:
    """Debezium-style snapshot keys for ``GET /sources/{id}/metrics`` (data section)."""
    if isinstance(ctx_or_session, Session):
        return _metrics(ctx_or_session, source_id)
    with ctx_or_session.store.session() as s:
        return _metrics(s, source_id)


def request_initial(session: Session, source_id: str, tables: list[str]) -> None:
    """Queue incremental snapshots of ``tables`` for pipelines with ``snapshot_new_tables``.

    Called in the transaction that adds the tables (pipeline create, source update). Tables
    with an active snapshot are skipped, never refused: creating the pipeline must not fail.
    """
    if not tables:
        return
    active = {
        r.table
        for r in session.scalars(
            select(SnapshotTable).where(
                SnapshotTable.source_id == source_id, SnapshotTable.status.in_(ACTIVE)
            )
        )
    }
    todo = [t for t in _qualified(tables) if t not in active]
    if todo:
        _add(session, source_id, todo, "incremental", {}, None)


def pipeline_tables(session: Session, pipeline: Pipeline) -> list[str]:
    """The tables a pipeline carries: its selected topics, or every table of its source."""
    body = pipeline.source_body if isinstance(pipeline.source_body, dict) else {}
    prefix = f"source_{pipeline.source_id}."
    selected = [str(t).removeprefix(prefix) for t in body.get("topics") or []]
    if selected:
        return selected
    source = session.get(Source, pipeline.source_id)
    if source is None:
        return []
    names = topic_names(source.config)
    names += [t.name for t in session.scalars(select(Topic).where(Topic.source_id == source.id))]
    return list(dict.fromkeys(names))


def wants_initial(session: Session, source_id: str) -> bool:
    return (
        session.scalars(
            select(Pipeline.id).where(
                Pipeline.source_id == source_id, Pipeline.snapshot_new_tables.is_(True)
            )
        ).first()
        is not None
    )


def _metrics(s: Session, source_id: str) -> dict[str, Any]:
    rows = _latest_per_table(
        s.scalars(select(SnapshotTable).where(SnapshotTable.source_id == source_id)).all()
    )
    return {
        "SnapshotRunning": sum(1 for r in rows if r.status in ACTIVE),
        "SnapshotCompleted": sum(1 for r in rows if r.status == COMPLETED),
        "snapshotStatus": [
            {
                "status": r.status,
                "topic_id": r.topic_id,
                "submit_timestamp": _aware(r.submitted_at).isoformat(),
            }
            for r in rows
        ],
    }


def _source(s: Session, source_id: str) -> Source:
    # Not an id (e.g. a NUL byte the metadata store cannot even compare): no such source.
    row = s.get(Source, source_id) if configs.is_object_id(source_id) else None
    if row is None:
        raise NotFound(f"source {source_id} not found")
    return row


def _qualified(names: list[str]) -> list[str]:
    return [n if "." in n else f"public.{n}" for n in (x.strip() for x in names) if n]


def _tables(s: Session, source: Source, names: list[str] | None) -> list[str]:
    known = _qualified(topic_names(source.config))
    known += [t.name for t in s.scalars(select(Topic).where(Topic.source_id == source.id))]
    known = list(dict.fromkeys(_qualified(known)))
    if names is None:
        if not known:
            raise Invalid(f"source {source.name} lists no tables: name them in topic_names")
        return known
    wanted = list(dict.fromkeys(_qualified(names)))
    if not wanted:
        raise Invalid("topic_names is empty")
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise Invalid(f"source {source.name} does not capture {', '.join(unknown)}")
    return wanted


def _refuse_if_active(s: Session, source_id: str) -> None:
    busy = s.scalars(
        select(SnapshotTable.table).where(
            SnapshotTable.source_id == source_id, SnapshotTable.status.in_(ACTIVE)
        )
    ).all()
    if busy:
        raise Conflict(
            f"a snapshot is already running for this source ({', '.join(sorted(set(busy)))}); "
            "wait for it or cancel it with POST /sources/cancel_snapshot"
        )


def _conditions(conditions: list[Condition] | None, tables: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for c in conditions or []:
        table = _qualified([c.data_collection])[0] if c.data_collection.strip() else ""
        if table not in tables:
            raise Invalid(
                f"additional_conditions names {c.data_collection!r}, not a snapshotted table"
            )
        try:
            predicate = filters.check(c.filter)
        except filters.FilterError as exc:
            raise Invalid(f"filter for {table}: {exc}") from exc
        out[table] = f"({out[table]}) AND ({predicate})" if table in out else predicate
    return out


def _check_against_source(
    box: SecretBox,
    connector: str,
    stored: dict[str, Any],
    tables: list[str],
    conditions: dict[str, str],
    body: SnapshotIn,
) -> None:
    """Compile filters and check keys against the live tables; skipped when unreachable."""
    try:
        spec = registry.get("source", connector)
        config = validate(spec.config_model, reveal_config(box, stored))
        instance = registry.load_implementation(spec)(config, name="snapshot-check")
    except Exception as exc:
        log.warning("snapshot request: cannot load source %s: %s", connector, exc)
        return
    offer = getattr(instance, "snapshot_readers", None)
    if offer is None:
        raise Invalid(f"source connector {connector} does not support snapshots")
    try:
        reader: ChunkReader = offer().factory()
    except Exception as exc:  # unreachable: the runtime checks again and fails the table
        log.warning("snapshot request: source database unreachable: %s", exc)
        return
    try:
        for table in tables:
            plan = reader.plan(table, body.surrogate_key)
            if body.snapshot_type != BLOCKING and not plan.key:
                raise Invalid(
                    f"table {table} has no primary key: give a surrogate_key or request a "
                    "blocking snapshot"
                )
            if table in conditions:
                reader.check_filter(table, conditions[table])
    except SnapshotError as exc:
        raise Invalid(str(exc)) from exc
    finally:
        reader.close()


def _add(
    s: Session,
    source_id: str,
    tables: list[str],
    kind: str,
    conditions: dict[str, str],
    body: SnapshotIn | None,
) -> str:
    request_id = new_id()
    now = datetime.now(UTC)
    for table in tables:
        s.add(
            SnapshotTable(
                id=new_id(),
                request_id=request_id,
                source_id=source_id,
                table=table,
                topic_id=topic_id(source_id, table),
                kind=kind,
                status=PENDING,
                filter=conditions.get(table),
                surrogate_key=body.surrogate_key if body is not None else None,
                submitted_at=now,
            )
        )
    s.flush()
    return request_id


def _latest_per_table(rows: Any) -> list[SnapshotTable]:
    latest: dict[str, SnapshotTable] = {}
    for r in rows:
        seen = latest.get(r.table)
        if seen is None or (_aware(r.submitted_at), r.id) > (_aware(seen.submitted_at), seen.id):
            latest[r.table] = r
    return sorted(latest.values(), key=lambda r: r.table)


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _present(r: SnapshotTable) -> TopicSnapshot:
    rate = eta = None
    if r.started_at is not None and r.rows_read:
        end = _aware(r.finished_at) if r.finished_at is not None else datetime.now(UTC)
        elapsed = (end - _aware(r.started_at)).total_seconds()
        if elapsed > 0:
            rate = r.rows_read / elapsed
            if r.status in ACTIVE:
                eta = max(0.0, (r.rows_total - r.rows_read) / rate)
    return TopicSnapshot(
        id=r.id,
        topic_id=r.topic_id,
        topic_name=r.table,
        status=r.status,
        snapshot_type="blocking" if r.kind == BLOCKING else "incremental",
        filter=r.filter,
        surrogate_key=r.surrogate_key,
        rows_read=r.rows_read,
        rows_total=max(r.rows_total, r.rows_read),
        rows_per_second=rate,
        eta_seconds=eta,
        chunks_done=r.chunks_done,
        message=r.message,
        submit_timestamp=_aware(r.submitted_at),
        started_at=_aware(r.started_at) if r.started_at else None,
        finished_at=_aware(r.finished_at) if r.finished_at else None,
    )
