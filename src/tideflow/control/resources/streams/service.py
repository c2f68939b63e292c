"""Streams: sources seen through the Planasonix-style streams API.

One ``sources`` row is both a platform-API source and a stream (its ``stream_id``). Creating a
stream validates and stores exactly what creating a source would (same connector validation,
sealed secrets, topics), but the stream waits in ``created`` until ``start``; deleting one goes
through the sources service's delete, which releases the upstream slot.

Status comes from what the runtime reports for ``source:<id>``; before the first start it is
``created``, and before the runtime has reported anything it is what the desired state implies.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, false, or_, select
from sqlalchemy.orm import Session

from tideflow.connectors import registry
from tideflow.control.context import AppContext
from tideflow.control.resources import configs
from tideflow.control.resources.connections import service as connections
from tideflow.control.resources.metrics import service as metrics_service
from tideflow.control.resources.sources import service as sources
from tideflow.control.resources.streams import cursor as cursors
from tideflow.control.resources.streams import mapping
from tideflow.control.resources.streams.schemas import STATUSES, StreamCreate
from tideflow.errors import Conflict, Invalid, NotFound
from tideflow.ids import new_id, new_stream_id
from tideflow.store.models.resources import Connection, Pipeline, Source
from tideflow.store.models.runtime import UnitStatus

# What the runtime reports (UnitStatus.status) → stream status.
REPORTED = {
    "Starting": "starting",
    "Active": "running",
    "Paused": "paused",
    "Stopped": "stopped",
    "Broken": "error",
}
# Before the runtime has reported (or when it reports Unassigned/Unknown): what the desired
# state implies.
DESIRED = {"Active": "starting", "Paused": "paused", "Stopped": "stopped"}
# action → (desired state, status the runtime will report once it has acted).
ACTIONS = {
    "start": ("Active", "starting"),
    "stop": ("Stopped", "stopped"),
    "pause": ("Paused", "paused"),
    "resume": ("Active", "running"),
}


_STREAM_ID = re.compile(r"str_[0-9a-z]{1,28}")


def _now() -> datetime:
    return datetime.now(UTC)


def status_of(row: Source, reported: UnitStatus | None) -> tuple[str, str | None]:
    """(stream status, the runtime's message about it)."""
    if not row.started:
        return "created", None
    if reported is not None and reported.status in REPORTED:
        # The runtime's message says why a stream is in error, or what it is retrying.
        return REPORTED[reported.status], reported.message or None
    return DESIRED.get(row.desired_state, "starting"), None


def _unit(row: Source) -> str:
    return f"source:{row.id}"


def _reports(s: Session, rows: list[Source]) -> dict[str, UnitStatus]:
    if not rows:
        return {}
    units = [_unit(r) for r in rows]
    return {u.unit: u for u in s.scalars(select(UnitStatus).where(UnitStatus.unit.in_(units)))}


def _pipeline_of(s: Session, row: Source) -> str | None:
    if row.pipeline_id:
        return row.pipeline_id
    return s.scalar(
        select(Pipeline.id).where(Pipeline.source_id == row.id).order_by(Pipeline.created_at)
    )


def _hidden_keys(s: Session, row: Source) -> list[str]:
    """Connector keys that come from the stream's connection (not shown in its config)."""
    if not row.connection_id:
        return []
    conn = s.get(Connection, row.connection_id)
    source_type = mapping.source_type_of(row.connector)
    keys = list(mapping.connection_keys(source_type, _model_keys(row.connector)).values())
    if conn is not None:
        for name in (conn.config or {}).get("options") or {}:
            keys.append(mapping.OPTION_KEYS.get(name, name))
    return keys


def _model_keys(connector: str) -> list[str]:
    try:
        model = registry.get("source", connector).config_model
    except Invalid:
        return []
    return [f.alias or n for n, f in model.model_fields.items()]


def to_resource(
    s: Session, ctx: AppContext, row: Source, reported: UnitStatus | None
) -> dict[str, Any]:
    status, message = status_of(row, reported)
    source_type = mapping.source_type_of(row.connector)
    shown = configs.shown_config(ctx.secrets, row.config or {}, reveal=False)
    return {
        "id": row.stream_id,
        "type": "stream",
        "attributes": {
            "name": row.name,
            "source_type": source_type,
            "source_id": row.id,
            "connector": row.connector,
            "pipeline_id": _pipeline_of(s, row),
            "connection_id": row.connection_id,
            "status": status,
            "status_message": message,
            "worker_id": (reported.worker or None) if reported is not None else None,
            "desired_state": row.desired_state,
            "config": mapping.shown_config(source_type, shown, _hidden_keys(s, row)),
            "topics": sources.topic_names(row.config or {}),
            "created_at": configs.aware(row.created_at),
            "updated_at": configs.aware(row.updated_at),
        },
    }


def _status_filter(stmt: Select[Any], status: str) -> Select[Any]:
    reported = UnitStatus.status
    known = list(REPORTED)
    if status == "created":
        return stmt.where(Source.started.is_(False))
    started = stmt.where(Source.started.is_(True))
    by_report = [k for k, v in REPORTED.items() if v == status]
    by_desire = [k for k, v in DESIRED.items() if v == status]
    clauses: list[ColumnElement[bool]] = []
    if by_report:
        clauses.append(reported.in_(by_report))
    if by_desire:
        clauses.append(
            (or_(reported.is_(None), reported.not_in(known))) & Source.desired_state.in_(by_desire)
        )
    return started.where(or_(*clauses)) if clauses else started.where(false())


def list_streams(
    ctx: AppContext,
    *,
    status: str | None,
    source_type: str | None,
    pipeline_id: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    if status is not None and status not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)}; got '{status}'")
    stmt = select(Source).outerjoin(UnitStatus, UnitStatus.unit == "source:" + Source.id)
    if status is not None:
        stmt = _status_filter(stmt, status)
    if source_type:
        stmt = stmt.where(Source.connector == mapping.SOURCE_TYPES.get(source_type, source_type))
    if pipeline_id:
        if not configs.is_object_id(pipeline_id):
            return [], None  # cannot name one of our pipelines
        primary = select(Pipeline.source_id).where(Pipeline.id == pipeline_id)
        stmt = stmt.where(or_(Source.pipeline_id == pipeline_id, Source.id.in_(primary)))
    stmt = cursors.after(stmt, Source, cursor)
    with ctx.store.session() as s:
        rows = list(s.scalars(stmt.limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        reports = _reports(s, rows)
        items = [to_resource(s, ctx, r, reports.get(_unit(r))) for r in rows]
        next_cursor = cursors.encode(rows[-1].created_at, rows[-1].id) if more else None
    return items, next_cursor


def _require(s: Session, stream_id: str) -> Source:
    row = None
    if _STREAM_ID.fullmatch(stream_id):
        row = s.scalar(select(Source).where(Source.stream_id == stream_id))
    if row is None:
        raise NotFound(f"no stream '{stream_id}'")
    return row


def get(ctx: AppContext, stream_id: str) -> dict[str, Any]:
    with ctx.store.session() as s:
        row = _require(s, stream_id)
        return to_resource(s, ctx, row, _reports(s, [row]).get(_unit(row)))


def create(ctx: AppContext, body: StreamCreate) -> dict[str, Any]:
    connector = mapping.connector_for(body.source_type)
    spec = registry.get("source", connector)  # 422 unless the connector is installed
    model_keys = _model_keys(connector)
    with ctx.store.session() as s:
        if not configs.is_object_id(body.pipeline_id) or s.get(Pipeline, body.pipeline_id) is None:
            raise Invalid(f"pipelineId '{body.pipeline_id}' does not name a pipeline")
        config: dict[str, Any] = {}
        kinds = mapping.CONNECTION_KINDS.get(body.source_type)
        if body.connection_id is not None:
            try:
                conn = connections.get_row(s, body.connection_id)
            except NotFound:
                raise Invalid(
                    f"connectionId '{body.connection_id}' does not name a connection"
                ) from None
            if kinds is None or conn.kind not in kinds:
                raise Invalid(
                    f"connection '{conn.name}' is a {conn.kind} connection; a "
                    f"{body.source_type} stream needs "
                    + (" or ".join(sorted(kinds)) if kinds else "no connection")
                )
            settings = connections.revealed(ctx, conn)
            config.update(mapping.connection_config(body.source_type, settings, model_keys))
        elif kinds is not None:
            raise Invalid(f"connectionId is required for {body.source_type} streams")
        config.update(mapping.stream_config(body.source_type, body.config))
        try:
            _, sealed = configs.checked_config("source", spec.code, config, ctx.secrets)
            sources.check_topics(config)
        except Invalid as exc:
            raise Invalid(
                mapping.friendly(exc.message, body.source_type, model_keys), code=exc.code
            ) from None
        sources.check_name_free(s, body.name)
        row = Source(
            id=new_id(),
            stream_id=new_stream_id(),
            name=body.name,
            connector=connector,
            config=sealed,
            created_from="api",
            desired_state="Stopped",
            tags=[],
            pipeline_id=body.pipeline_id,
            connection_id=body.connection_id,
            started=False,
        )
        s.add(row)
        sources.flush_named(s, body.name)
        sources.sync_topics(s, row)
        s.flush()
        return to_resource(s, ctx, row, None)


def apply_connection(
    s: Session,
    ctx: AppContext,
    connection_id: str,
    old: dict[str, Any],
    new: dict[str, Any],
) -> None:
    """Rewrite the configs of the streams using a connection after its settings changed.

    Keys keep their place; keys the old settings set and the new ones do not are removed.
    Runs in the caller's transaction: a resulting config the connector rejects is a 422 and
    nothing changes.
    """
    for row in s.scalars(select(Source).where(Source.connection_id == connection_id)):
        source_type = mapping.source_type_of(row.connector)
        keys = _model_keys(row.connector)
        before = mapping.connection_config(source_type, old, keys)
        after = mapping.connection_config(source_type, new, keys)
        current = configs.shown_config(ctx.secrets, row.config or {}, reveal=True)
        config = {k: after.get(k, v) for k, v in current.items() if k in after or k not in before}
        config.update({k: v for k, v in after.items() if k not in config})
        try:
            _, sealed = configs.checked_config(
                "source", row.connector, config, ctx.secrets, previous=row.config
            )
        except Invalid as exc:
            raise Invalid(
                f"stream '{row.name}' ({row.stream_id}) would become invalid: "
                + mapping.friendly(exc.message, source_type, keys),
                code=exc.code,
            ) from None
        row.config = sealed
        row.updated_at = _now()


def act(ctx: AppContext, stream_id: str, action: str) -> dict[str, Any]:
    desired, status = ACTIONS[action]
    with ctx.store.session() as s:
        row = _require(s, stream_id)
        current, _ = status_of(row, _reports(s, [row]).get(_unit(row)))
        if action == "pause" and current in ("created", "stopped"):
            raise Conflict(f"stream '{row.name}' is {current}; start it before pausing it")
        if action == "resume" and current in ("created", "stopped"):
            raise Conflict(f"stream '{row.name}' is {current}; use start, not resume")
        row.desired_state = desired
        row.started = True
        row.updated_at = _now()
        s.flush()
        return {
            "id": row.stream_id,
            "type": "stream",
            "attributes": {
                "status": status,
                "desired_state": desired,
                "updated_at": configs.aware(row.updated_at),
            },
        }


def delete(ctx: AppContext, stream_id: str, *, force: bool) -> dict[str, Any]:
    """Delete through the sources service (which releases the slot).

    The stream's own link to the pipeline it feeds does not block deletion (deleting a stream
    is how an input leaves a pipeline); a pipeline whose platform-API source it is still does.
    """
    with ctx.store.session() as s:
        row = _require(s, stream_id)
        source_id, link = row.id, row.pipeline_id
        row.pipeline_id = None
    try:
        sources.delete(ctx, source_id, force=force, reveal=False)
    except BaseException:
        with ctx.store.session() as s:
            restored = s.get(Source, source_id)
            if restored is not None:
                restored.pipeline_id = link
        raise
    return {
        "id": stream_id,
        "type": "stream",
        "attributes": {"deleted": True, "deleted_at": _now()},
    }


def summary(ctx: AppContext) -> dict[str, Any]:
    counts = dict.fromkeys(STATUSES, 0)
    with ctx.store.session() as s:
        rows = list(s.scalars(select(Source)))
        reports = _reports(s, rows)
        for row in rows:
            counts[status_of(row, reports.get(_unit(row)))[0]] += 1
    epm, measured = metrics_service.approx_events_per_minute(ctx)
    return {
        "type": "streams_summary",
        "attributes": {
            "total": len(rows),
            "by_status": counts,
            "approx_events_per_minute": epm,
            "metrics_available": measured,
            "computed_at": _now(),
        },
    }


def metrics(ctx: AppContext, stream_id: str, window: str) -> dict[str, Any]:
    with ctx.store.session() as s:
        row = _require(s, stream_id)
        status, _ = status_of(row, _reports(s, [row]).get(_unit(row)))
        source_id = row.id
    return {
        "id": stream_id,
        "type": "stream_metrics",
        "attributes": {
            "stream_id": stream_id,
            "status": status,
            **metrics_service.stream_figures(ctx, source_id, window),
            "window": window,
            "computed_at": _now(),
        },
    }
