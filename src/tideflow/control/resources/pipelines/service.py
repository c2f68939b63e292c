"""Pipeline rules: a source's topics carried through transforms into a destination.

The client's ``source``, ``destination`` and ``transforms`` objects are stored as sent and
echoed back; the server only fills in a source's or destination's ``name`` and ``connector``
when the client left them out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy import update as sql_update
from sqlalchemy.orm import Session

from tideflow.control.resources import configs
from tideflow.control.resources.common import ListParams, paginate
from tideflow.control.resources.metrics import service as metrics_service
from tideflow.control.resources.named import Named
from tideflow.control.resources.pipelines.schemas import (
    PipelineDestination,
    PipelineIn,
    PipelineOut,
    PipelineSource,
    PipelineTransform,
)
from tideflow.control.resources.snapshots import service as snapshots
from tideflow.control.resources.sources.service import topic_id, topic_names
from tideflow.control.resources.wire import Page
from tideflow.engine.cluster import shards
from tideflow.engine.transforms.spec import RUNNABLE
from tideflow.errors import Invalid
from tideflow.ids import new_id
from tideflow.store.models.resources import Destination, Pipeline, Source, Transform

if TYPE_CHECKING:
    from tideflow.control.context import AppContext


def _effective(
    own: str | None, source: str | None, own_message: str | None, source_message: str | None
) -> tuple[str | None, str | None]:
    """A pipeline moves data only while its source streams: an Active pipeline whose source is
    still Starting (slot not created yet) or Broken shows the source's state and message, so
    nobody writes rows expecting them to be captured before capture has begun."""
    if own == "Active" and source in ("Starting", "Broken"):
        return source, source_message or own_message
    return own, own_message


def present(session: Session, rows: list[Pipeline]) -> list[PipelineOut]:
    units = [f"pipeline:{r.id}" for r in rows] + [f"source:{r.source_id}" for r in rows]
    reported, messages, workers = configs.reports(session, units)
    effective = {
        row.id: _effective(
            reported.get(f"pipeline:{row.id}"),
            reported.get(f"source:{row.source_id}"),
            messages.get(f"pipeline:{row.id}"),
            messages.get(f"source:{row.source_id}"),
        )
        for row in rows
    }
    sharded = shards.holders(session, [r.id for r in rows])
    return [
        PipelineOut(
            id=row.id,
            name=row.name,
            snapshot_new_tables=row.snapshot_new_tables,
            source=PipelineSource.model_validate(row.source_body),
            destination=PipelineDestination.model_validate(row.destination_body),
            transforms=[PipelineTransform.model_validate(t) for t in row.transforms or []],
            tags=list(row.tags or []),
            created_from=row.created_from,
            connector_status=configs.derived_status(row.desired_state, effective[row.id][0]),
            connector_status_message=effective[row.id][1],
            worker_id=next(iter(sharded.get(row.id, [])), None)
            or workers.get(f"pipeline:{row.id}")
            or workers.get(f"source:{row.source_id}"),
            worker_ids=sharded.get(row.id, []),
            health=metrics_service.health_in(session, f"pipeline:{row.id}"),
            desired_state=row.desired_state,
            created_timestamp=configs.aware(row.created_at),
        )
        for row in rows
    ]


_named = Named(Pipeline, "pipeline")
_find = _named.find
_require = _named.require
_check_name_free = _named.check_name_free
_flush = _named.flush


class _Checked:
    """A pipeline body whose references all resolve, ready to store."""

    def __init__(self, session: Session, body: PipelineIn) -> None:
        source = (
            session.get(Source, body.source.id) if configs.is_object_id(body.source.id) else None
        )
        if source is None:
            raise Invalid(f"source '{body.source.id}' does not exist", code="unknown_source")
        destination = (
            session.get(Destination, body.destination.id)
            if configs.is_object_id(body.destination.id)
            else None
        )
        if destination is None:
            raise Invalid(
                f"destination '{body.destination.id}' does not exist", code="unknown_destination"
            )
        _check_topics(source, body.source.topics)
        transforms = body.transforms or []
        _check_transforms(session, [t.id for t in transforms])
        configs.check_tags(session, body.tags or [])

        self.source_id = source.id
        self.destination_id = destination.id
        self.source_body = body.source.model_dump(exclude_unset=True)
        self.source_body.setdefault("name", source.name)
        self.source_body.setdefault("connector", source.connector)
        self.source_body.setdefault("topics", [])
        self.destination_body = body.destination.model_dump(exclude_unset=True)
        self.destination_body.setdefault("name", destination.name)
        self.destination_body.setdefault("connector", destination.connector)
        shards.check(destination.connector, self.destination_body)
        self.transforms: list[dict[str, Any]] = [
            t.model_dump(exclude_unset=True) for t in transforms
        ]


def _check_topics(source: Source, wanted: list[str]) -> None:
    names = topic_names(source.config)
    known = set(names) | {topic_id(source.id, n) for n in names}
    unknown = [t for t in dict.fromkeys(wanted) if t not in known]
    if unknown:
        captured = ", ".join(names) or "none"
        raise Invalid(
            f"source '{source.name}' does not capture topic(s) {', '.join(unknown)} "
            f"(it captures: {captured})",
            code="unknown_topic",
        )


def _check_transforms(session: Session, ids: list[str]) -> None:
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return
    valid = [t for t in wanted if configs.is_object_id(t)]
    query = select(Transform.id, Transform.transform).where(Transform.id.in_(valid))
    kinds: dict[str, str] = {tid: kind for tid, kind in session.execute(query)} if valid else {}
    unknown = [t for t in wanted if t not in kinds]
    if unknown:
        raise Invalid(f"unknown transform id(s): {', '.join(unknown)}", code="unknown_transform")
    # Refused here rather than found Broken at run time: this release stores these types only.
    stored_only = [f"{t} ({kinds[t]})" for t in wanted if kinds[t] not in RUNNABLE]
    if stored_only:
        raise Invalid(
            f"transform(s) {', '.join(stored_only)} cannot run in a pipeline in this release "
            f"(runnable types: {', '.join(sorted(RUNNABLE))})",
            code="not_implemented",
        )


def list_(ctx: AppContext, params: ListParams) -> Page[PipelineOut]:
    with ctx.store.session() as s:
        rows, total = paginate(s, Pipeline, params)
        items = present(s, rows)
    return Page[PipelineOut].of(items, params, total)


def get(ctx: AppContext, pipeline_id: str) -> Page[PipelineOut]:
    """The get-by-id envelope: an unknown id is an empty result, not an error."""
    with ctx.store.session() as s:
        row = _find(s, pipeline_id)
        item = None if row is None else present(s, [row])[0]
    return Page[PipelineOut].single(item)


def create(ctx: AppContext, body: PipelineIn) -> PipelineOut:
    with ctx.store.session() as s:
        checked = _Checked(s, body)
        _check_name_free(s, body.name)
        row = Pipeline(
            id=new_id(),
            name=body.name,
            source_id=checked.source_id,
            destination_id=checked.destination_id,
            snapshot_new_tables=body.snapshot_new_tables,
            source_body=checked.source_body,
            destination_body=checked.destination_body,
            transforms=checked.transforms,
            created_from=body.created_from,
            # As in Streamkap, a pipeline created through the platform API starts at once.
            desired_state="Active",
            tags=list(body.tags or []),
        )
        s.add(row)
        _flush(s, body.name)
        if row.snapshot_new_tables:
            # Rows written before the source's slot existed reach the destination only this way.
            snapshots.request_initial(s, row.source_id, snapshots.pipeline_tables(s, row))
        return present(s, [row])[0]


def update(ctx: AppContext, pipeline_id: str, body: PipelineIn) -> PipelineOut:
    """Full replace; ``tags`` and ``created_from`` are kept when the body leaves them out."""
    with ctx.store.session() as s:
        row = _require(s, pipeline_id)
        checked = _Checked(s, body)
        _check_name_free(s, body.name, own_id=row.id)
        row.name = body.name
        row.source_id = checked.source_id
        row.destination_id = checked.destination_id
        row.snapshot_new_tables = body.snapshot_new_tables
        row.source_body = checked.source_body
        row.destination_body = checked.destination_body
        row.transforms = checked.transforms
        if body.tags is not None:
            row.tags = list(body.tags)
        if "created_from" in body.model_fields_set:
            row.created_from = body.created_from
        _flush(s, body.name)
        return present(s, [row])[0]


def set_desired_state(ctx: AppContext, pipeline_id: str, state: str) -> PipelineOut:
    with ctx.store.session() as s:
        row = _require(s, pipeline_id)
        row.desired_state = state
        s.flush()
        return present(s, [row])[0]


def delete(ctx: AppContext, pipeline_id: str) -> PipelineOut:
    """Stop the pipeline (committed first, so the engine drains it), then forget it."""
    stopped = set_desired_state(ctx, pipeline_id, "Stopped")
    with ctx.store.session() as s:
        row = _find(s, pipeline_id)
        if row is not None:
            s.delete(row)
            # Streams created with this pipelineId no longer point at anything.
            s.execute(
                sql_update(Source).where(Source.pipeline_id == pipeline_id).values(pipeline_id=None)
            )
    return stopped
