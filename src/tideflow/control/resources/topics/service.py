"""Topics: one per captured table of a source (``source_<sourceId>.<schema>.<table>``).

Topic rows are created and removed by the sources service as tables enter or leave a source's
include list; here they are read, and their partition count and tags changed. Tideflow has no
Kafka cluster in between, so the partition count is recorded and reported (it may only grow,
as with Kafka) without changing how changes are delivered.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tideflow.connectors import registry
from tideflow.control.context import AppContext
from tideflow.control.resources.common import ListParams
from tideflow.control.resources.configs import is_object_id
from tideflow.control.resources.tags.service import check_ids as check_tag_ids
from tideflow.control.resources.topics.schemas import TopicPatch
from tideflow.errors import Invalid, NotFound, TideflowError
from tideflow.store.models.resources import Pipeline, Source, Topic, Transform

ENTITY_TYPES = {
    "sources": "sources",
    "source": "sources",
    "pipelines": "pipelines",
    "pipeline": "pipelines",
    "destinations": "destinations",
    "destination": "destinations",
    "transforms": "transforms",
    "transform": "transforms",
}


def _display_name(connector: str) -> str:
    try:
        return registry.get("source", connector).display_name
    except TideflowError:
        return connector


def _entity(source: Source, topic_ids: list[str]) -> dict[str, Any]:
    return {
        "entity_type": "sources",
        "entity_id": source.id,
        "name": source.name,
        "connector": source.connector,
        "display_name": _display_name(source.connector),
        "topic_ids": topic_ids,
        "topic_db_ids": topic_ids,
    }


def _to_dicts(s: Session, topics: Iterable[Topic]) -> list[dict[str, Any]]:
    topics = list(topics)
    source_ids = {t.source_id for t in topics}
    sources = {src.id: src for src in s.scalars(select(Source).where(Source.id.in_(source_ids)))}
    siblings: dict[str, list[str]] = {}
    for tid, sid in s.execute(
        select(Topic.id, Topic.source_id).where(Topic.source_id.in_(source_ids)).order_by(Topic.id)
    ):
        siblings.setdefault(sid, []).append(tid)
    out = []
    for t in topics:
        src = sources[t.source_id]
        out.append(
            {
                "topic_id": t.id,
                "partition_count": t.partition_count,
                "id": t.id,
                "name": t.name,
                "entity": _entity(src, siblings.get(src.id, [])),
                "kafka": {"partitions": {"count": t.partition_count}},
                "prefix": f"source_{src.id}",
                "tags": list(t.tags or []),
            }
        )
    return out


def get(ctx: AppContext, topic_id: str) -> dict[str, Any]:
    with ctx.store.session() as s:
        return _to_dicts(s, [_get(s, topic_id)])[0]


def update(ctx: AppContext, topic_id: str, patch: TopicPatch) -> dict[str, Any]:
    if patch.partition_count is None and patch.tags is None:
        raise Invalid("payload needs partition_count and/or tags")
    with ctx.store.session() as s:
        t = _get(s, topic_id)
        if patch.partition_count is not None:
            if patch.partition_count < t.partition_count:
                raise Invalid(
                    f"payload.partition_count cannot shrink topic '{t.id}' from "
                    f"{t.partition_count} to {patch.partition_count} partitions"
                )
            t.partition_count = patch.partition_count
        if patch.tags is not None:
            t.tags = check_tag_ids(s, patch.tags)
        s.flush()
        return _to_dicts(s, [t])[0]


def details(
    ctx: AppContext,
    entity_type: str | None,
    entity_ids: list[str],
    params: ListParams,
    *,
    offset: int | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """The list envelope of the topics of some sources, pipelines, destinations or transforms."""
    kind = None
    if entity_type:
        kind = ENTITY_TYPES.get(entity_type.lower())
        if kind is None:
            raise Invalid(
                f"entity_type must be one of sources, pipelines, destinations, transforms; "
                f"got '{entity_type}'"
            )
    ids = [i for i in entity_ids if is_object_id(i)]
    with ctx.store.session() as s:
        # Ids that cannot be ours match nothing.
        topics = [] if entity_ids and not ids else _select(s, kind, ids)
        if params.partial_name:
            needle = params.partial_name.lower()
            topics = [t for t in topics if needle in t.name.lower() or needle in t.id.lower()]
        topics = _sort(topics, params)
        total = len(topics)
        if limit is not None or offset is not None:
            size = limit or params.page_size
            start = offset or 0
            page = start // size + 1
        else:
            size, page = params.page_size, params.page
            start = (page - 1) * size
        items = _to_dicts(s, topics[start : start + size])
    return {
        "result": items,
        "page": page,
        "page_size": size,
        "total": total,
        "has_next": start + size < total,
    }


def _select(s: Session, kind: str | None, ids: list[str]) -> list[Topic]:
    if kind is None or kind == "sources":
        stmt = select(Topic)
        if kind == "sources" and ids:
            stmt = stmt.where(Topic.source_id.in_(ids))
        return list(s.scalars(stmt))
    if kind == "transforms":
        stmt_t = select(Transform)
        if ids:
            stmt_t = stmt_t.where(Transform.id.in_(ids))
        regexes = []
        for tr in s.scalars(stmt_t):
            pattern = (tr.config or {}).get("transforms.input.topic.pattern")
            if isinstance(pattern, str):
                try:
                    regexes.append(re.compile(pattern))
                except re.error:
                    continue
        return [
            t
            for t in s.scalars(select(Topic))
            if any(r.fullmatch(t.id) or r.fullmatch(t.name) for r in regexes)
        ]
    stmt_p = select(Pipeline)
    if ids:
        column = Pipeline.id if kind == "pipelines" else Pipeline.destination_id
        stmt_p = stmt_p.where(column.in_(ids))
    found: dict[str, Topic] = {}
    for p in s.scalars(stmt_p):
        selected = (p.source_body or {}).get("topics")
        names = {n for n in selected if isinstance(n, str)} if isinstance(selected, list) else set()
        for t in s.scalars(select(Topic).where(Topic.source_id == p.source_id)):
            if not names or t.name in names or t.id in names:
                found[t.id] = t
        # Streams that feed this pipeline (fan-in) contribute all their topics.
        fan_in = select(Source.id).where(Source.pipeline_id == p.id)
        for t in s.scalars(select(Topic).where(Topic.source_id.in_(fan_in))):
            found[t.id] = t
    return list(found.values())


def _sort(topics: list[Topic], params: ListParams) -> list[Topic]:
    key = params.sort or "name"
    if key not in ("name", "id", "created_at", "created_timestamp"):
        raise Invalid(f"cannot sort by '{key}'; use one of: name, created_at")
    attr = "created_at" if key == "created_timestamp" else key
    return sorted(topics, key=lambda t: (getattr(t, attr), t.id), reverse=params.sort_dir == "desc")


def _storable(text: str) -> bool:
    return len(text) <= 255 and "\x00" not in text and text.isprintable()


def _get(s: Session, topic_id: str) -> Topic:
    t = s.get(Topic, topic_id) if _storable(topic_id) else None
    if t is None:
        raise NotFound(f"no topic '{topic_id}'")
    return t
