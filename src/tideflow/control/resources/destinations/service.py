"""Destination rules: validation, verbatim configs with sealed secrets, status.

A destination is not a runtime unit of its own: pipelines write to it. Its status is the
runtime's report for ``destination:<id>`` when there is one, else the best report among the
pipelines writing to it, else what its desired state implies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from tideflow.control.resources import configs
from tideflow.control.resources.common import ListParams, paginate
from tideflow.control.resources.destinations.schemas import DestinationIn, DestinationOut
from tideflow.control.resources.named import Named
from tideflow.control.resources.wire import Page
from tideflow.errors import Conflict, Invalid
from tideflow.ids import new_id
from tideflow.store.models.resources import Destination, Pipeline

if TYPE_CHECKING:
    from tideflow.control.context import AppContext
    from tideflow.store.crypto import SecretBox

# Of the pipelines' reports, the first present in this order speaks for the destination.
_PIPELINE_PRECEDENCE = ("Active", "Starting", "Broken")


def _statuses(session: Session, rows: list[Destination]) -> dict[str, str]:
    ids = [r.id for r in rows]
    own = configs.statuses(session, (f"destination:{i}" for i in ids))
    writers = list(
        session.execute(
            select(Pipeline.destination_id, Pipeline.id).where(Pipeline.destination_id.in_(ids))
        )
    )
    pipeline_reports = configs.statuses(session, (f"pipeline:{p}" for _, p in writers))
    out: dict[str, str] = {}
    for row in rows:
        reported = own.get(f"destination:{row.id}")
        if reported is None and row.desired_state == "Active":
            seen = {pipeline_reports.get(f"pipeline:{p}") for d, p in writers if d == row.id}
            reported = next((s for s in _PIPELINE_PRECEDENCE if s in seen), None)
        out[row.id] = configs.derived_status(row.desired_state, reported)
    return out


def present(
    session: Session, box: SecretBox, rows: list[Destination], reveal: bool
) -> list[DestinationOut]:
    status = _statuses(session, rows)
    return [
        DestinationOut(
            id=row.id,
            name=row.name,
            connector=row.connector,
            config=configs.shown_config(box, row.config, reveal),
            connector_status=status[row.id],
            desired_state=row.desired_state,
            created_timestamp=configs.aware(row.created_at),
            tags=list(row.tags or []),
            created_from=row.created_from,
        )
        for row in rows
    ]


def _one(session: Session, box: SecretBox, row: Destination, reveal: bool) -> DestinationOut:
    return present(session, box, [row], reveal)[0]


_named = Named(Destination, "destination")
_find = _named.find
_require = _named.require
_check_name_free = _named.check_name_free
_flush = _named.flush


def list_(ctx: AppContext, params: ListParams, *, reveal: bool) -> Page[DestinationOut]:
    with ctx.store.session() as s:
        rows, total = paginate(s, Destination, params)
        items = present(s, ctx.secrets, rows, reveal)
    return Page[DestinationOut].of(items, params, total)


def get(ctx: AppContext, destination_id: str, *, reveal: bool) -> Page[DestinationOut]:
    """The get-by-id envelope: an unknown id is an empty result, not an error."""
    with ctx.store.session() as s:
        row = _find(s, destination_id)
        item = None if row is None else _one(s, ctx.secrets, row, reveal)
    return Page[DestinationOut].single(item)


def create(ctx: AppContext, body: DestinationIn, *, reveal: bool) -> DestinationOut:
    _, sealed = configs.checked_config("destination", body.connector, body.config, ctx.secrets)
    with ctx.store.session() as s:
        configs.check_tags(s, body.tags or [])
        _check_name_free(s, body.name)
        row = Destination(
            id=new_id(),
            name=body.name,
            connector=body.connector,
            config=sealed,
            created_from=body.created_from,
            desired_state="Active",
            tags=list(body.tags or []),
        )
        s.add(row)
        _flush(s, body.name)
        return _one(s, ctx.secrets, row, reveal)


def update(
    ctx: AppContext, destination_id: str, body: DestinationIn, *, reveal: bool
) -> DestinationOut:
    """Full replace of name, config and (when sent) tags and created_from."""
    with ctx.store.session() as s:
        row = _require(s, destination_id)
        if body.connector != row.connector:
            raise Invalid(
                f"a destination's connector cannot change (it is '{row.connector}'); "
                "create a new destination instead"
            )
        _, sealed = configs.checked_config(
            "destination", body.connector, body.config, ctx.secrets, previous=row.config
        )
        if body.tags is not None:
            configs.check_tags(s, body.tags)
            row.tags = list(body.tags)
        _check_name_free(s, body.name, own_id=row.id)
        row.name = body.name
        row.config = sealed
        if "created_from" in body.model_fields_set:
            row.created_from = body.created_from
        _flush(s, body.name)
        return _one(s, ctx.secrets, row, reveal)


def delete(ctx: AppContext, destination_id: str, *, reveal: bool) -> DestinationOut:
    with ctx.store.session() as s:
        row = _require(s, destination_id)
        users = list(
            s.scalars(
                select(Pipeline).where(Pipeline.destination_id == row.id).order_by(Pipeline.name)
            )
        )
        if users:
            names = ", ".join(f"'{p.name}' ({p.id})" for p in users)
            raise Conflict(
                f"destination '{row.name}' is used by pipeline(s) {names}; delete them first",
                code="in_use",
            )
        deleted = _one(s, ctx.secrets, row, reveal)
        s.delete(row)
    return deleted
