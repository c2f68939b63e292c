"""Source rules: validation, verbatim configs with sealed secrets, topics, lifecycle.

A source's topics are its captured tables, read from its include list; their rows are kept in
step with the config in the same transaction that writes it.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from tideflow.control.resources import configs
from tideflow.control.resources.common import ListParams, paginate
from tideflow.control.resources.metrics import service as metrics_service
from tideflow.control.resources.named import Named
from tideflow.control.resources.sources.schemas import SourceIn, SourceOut
from tideflow.control.resources.wire import Page
from tideflow.errors import ApiError, Conflict, Invalid, TideflowError
from tideflow.ids import new_id, new_stream_id
from tideflow.store.models.resources import Pipeline, Source, Topic

if TYPE_CHECKING:
    from tideflow.control.context import AppContext
    from tideflow.store.crypto import SecretBox

log = logging.getLogger(__name__)

# Where a source lists what it captures: database tables, or Kafka topics for kafkadirect.
TOPIC_KEYS = ("table.include.list.user.defined", "topic.include.list.user.defined")
TOPIC_PREFIX = "source_"
# Topic ids are `source_<24-hex id>.<name>` and must fit the 255-character id column.
MAX_TOPIC_NAME = 255 - len(TOPIC_PREFIX) - 24 - 1


def topic_names(config: dict[str, Any]) -> list[str]:
    """The source's topics (schema.table) in include-list order, without duplicates."""
    for key in TOPIC_KEYS:
        value = config.get(key)
        if isinstance(value, str):
            return list(dict.fromkeys(p.strip() for p in value.split(",") if p.strip()))
    return []


def topic_id(source_id: str, name: str) -> str:
    return f"{TOPIC_PREFIX}{source_id}.{name}"


def check_topics(config: dict[str, Any]) -> None:
    for name in topic_names(config):
        if len(name) > MAX_TOPIC_NAME:
            key = next(k for k in TOPIC_KEYS if isinstance(config.get(k), str))
            raise Invalid(
                f"config key '{key}': table name '{name[:40]}...' is longer than "
                f"{MAX_TOPIC_NAME} characters"
            )


def sync_topics(session: Session, source: Source) -> list[str]:
    """Add topics for newly included tables, remove those no longer included; return the
    names added."""
    wanted = {topic_id(source.id, n): n for n in topic_names(source.config)}
    existing = {t.id: t for t in session.scalars(select(Topic).where(Topic.source_id == source.id))}
    for tid, topic in existing.items():
        if tid not in wanted:
            session.delete(topic)
    added = []
    for tid, name in wanted.items():
        if tid not in existing:
            session.add(Topic(id=tid, source_id=source.id, name=name))
            added.append(name)
    return added


def present(session: Session, box: SecretBox, rows: list[Source], reveal: bool) -> list[SourceOut]:
    reported, messages, workers = configs.reports(session, (f"source:{r.id}" for r in rows))
    out = []
    for row in rows:
        names = topic_names(row.config)
        out.append(
            SourceOut(
                id=row.id,
                name=row.name,
                connector=row.connector,
                config=configs.shown_config(box, row.config, reveal),
                connector_status=configs.derived_status(
                    row.desired_state, reported.get(f"source:{row.id}")
                ),
                connector_status_message=messages.get(f"source:{row.id}"),
                worker_id=workers.get(f"source:{row.id}"),
                health=metrics_service.health_in(session, f"source:{row.id}"),
                desired_state=row.desired_state,
                created_timestamp=configs.aware(row.created_at),
                tags=list(row.tags or []),
                created_from=row.created_from,
                topic_ids=[topic_id(row.id, n) for n in names],
                topics=names,
            )
        )
    return out


def _one(session: Session, box: SecretBox, row: Source, reveal: bool) -> SourceOut:
    return present(session, box, [row], reveal)[0]


# Public: the streams API creates the same Source rows and shares these checks.
NAMED = Named(Source, "source")
_find = NAMED.find
_require = NAMED.require
check_name_free = NAMED.check_name_free
flush_named = NAMED.flush


def list_(ctx: AppContext, params: ListParams, *, reveal: bool) -> Page[SourceOut]:
    with ctx.store.session() as s:
        rows, total = paginate(s, Source, params)
        items = present(s, ctx.secrets, rows, reveal)
    return Page[SourceOut].of(items, params, total)


def get(ctx: AppContext, source_id: str, *, reveal: bool) -> Page[SourceOut]:
    """The get-by-id envelope: an unknown id is an empty result, not an error."""
    with ctx.store.session() as s:
        row = _find(s, source_id)
        item = None if row is None else _one(s, ctx.secrets, row, reveal)
    return Page[SourceOut].single(item)


def create(ctx: AppContext, body: SourceIn, *, reveal: bool) -> SourceOut:
    _, sealed = configs.checked_config("source", body.connector, body.config, ctx.secrets)
    check_topics(body.config)
    with ctx.store.session() as s:
        configs.check_tags(s, body.tags or [])
        check_name_free(s, body.name)
        row = Source(
            id=new_id(),
            stream_id=new_stream_id(),
            name=body.name,
            connector=body.connector,
            config=sealed,
            created_from=body.created_from,
            # As in Streamkap, a source created through the platform API starts at once.
            desired_state="Active",
            tags=list(body.tags or []),
        )
        s.add(row)
        flush_named(s, body.name)
        sync_topics(s, row)
        s.flush()
        return _one(s, ctx.secrets, row, reveal)


def update(ctx: AppContext, source_id: str, body: SourceIn, *, reveal: bool) -> SourceOut:
    """Full replace of name, config and (when sent) tags and created_from."""
    with ctx.store.session() as s:
        row = _require(s, source_id)
        if body.connector != row.connector:
            raise Invalid(
                f"a source's connector cannot change (it is '{row.connector}'); "
                "create a new source instead"
            )
        _, sealed = configs.checked_config(
            "source", body.connector, body.config, ctx.secrets, previous=row.config
        )
        check_topics(body.config)
        if body.tags is not None:
            configs.check_tags(s, body.tags)
            row.tags = list(body.tags)
        check_name_free(s, body.name, own_id=row.id)
        row.name = body.name
        row.config = sealed
        if "created_from" in body.model_fields_set:
            row.created_from = body.created_from
        flush_named(s, body.name)
        added = sync_topics(s, row)
        # Tables added to a running source: backfill them for snapshot_new_tables pipelines.
        from tideflow.control.resources.snapshots import service as snapshots

        if added and snapshots.wants_initial(s, row.id):
            snapshots.request_initial(s, row.id, added)
        s.flush()
        return _one(s, ctx.secrets, row, reveal)


def set_desired_state(ctx: AppContext, source_id: str, state: str, *, reveal: bool) -> SourceOut:
    with ctx.store.session() as s:
        row = _require(s, source_id)
        row.desired_state = state
        s.flush()
        return _one(s, ctx.secrets, row, reveal)


def _users(session: Session, row: Source) -> list[Pipeline]:
    """Pipelines reading this source (as their platform-API source or as a fan-in stream)."""
    used_by = Pipeline.source_id == row.id
    if row.pipeline_id:
        used_by = or_(used_by, Pipeline.id == row.pipeline_id)
    return list(session.scalars(select(Pipeline).where(used_by).order_by(Pipeline.name)))


def _refuse_if_used(session: Session, row: Source) -> None:
    users = _users(session, row)
    if users:
        names = ", ".join(f"'{p.name}' ({p.id})" for p in users)
        raise Conflict(
            f"source '{row.name}' is used by pipeline(s) {names}; delete them first",
            code="in_use",
        )


def delete(ctx: AppContext, source_id: str, *, force: bool, reveal: bool) -> SourceOut:
    """Stop the source, drop its upstream state (slot, publication), then forget it.

    A failed upstream cleanup refuses the delete (409 with the reason) and leaves the source
    as it was; with ``force`` the source is deleted anyway.
    """
    with ctx.store.session() as s:
        row = _require(s, source_id)
        _refuse_if_used(s, row)
        previous_state = row.desired_state
        row.desired_state = "Stopped"
        s.flush()
        deleted = _one(s, ctx.secrets, row, reveal)
    try:
        _drop_upstream(ctx, source_id, force)
    except ApiError:
        with ctx.store.session() as s:
            restored = _find(s, source_id)
            if restored is not None:
                restored.desired_state = previous_state
        raise
    with ctx.store.session() as s:
        row = _require(s, source_id)
        _refuse_if_used(s, row)
        for topic in s.scalars(select(Topic).where(Topic.source_id == row.id)):
            s.delete(topic)
        s.flush()
        s.delete(row)
    return deleted


def _drop_upstream(ctx: AppContext, source_id: str, force: bool) -> None:
    """Call the engine's upstream cleanup when the engine provides one.

    A failed cleanup refuses the delete (409) so that a slot is never left pinning WAL
    unnoticed; with ``force`` the source is deleted anyway and the failure only logged.
    """
    if importlib.util.find_spec("tideflow.engine.lifecycle") is None:
        return
    lifecycle = importlib.import_module("tideflow.engine.lifecycle")
    drop = getattr(lifecycle, "drop_source_upstream", None)
    if drop is None:
        return
    try:
        drop(ctx.store, ctx.secrets, source_id, force)
    except ApiError:
        raise
    except Exception as exc:  # an upstream can fail in any way; the answer must stay a 4xx
        message = exc.message if isinstance(exc, TideflowError) else str(exc) or repr(exc)
        if force:
            log.warning(
                "upstream cleanup of source %s failed; deleted anyway (force): %s",
                source_id,
                message,
            )
            return
        raise Conflict(
            f"cannot clean up the source upstream: {message}; fix the cause or retry with "
            "?force=true to delete anyway",
            code="upstream_cleanup_failed",
        ) from None
