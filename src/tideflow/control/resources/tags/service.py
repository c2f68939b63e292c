"""Tags: labels for sources, destinations, pipelines, transforms and topics.

System tags (the built-in "Development" tag, created by ``ensure_builtin_tags``) can be read and
attached but neither changed nor deleted. A tag still attached to something cannot be deleted.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tideflow.control.context import AppContext
from tideflow.control.resources.configs import is_object_id
from tideflow.control.resources.tags.schemas import TagCreate, TagUpdate
from tideflow.errors import Conflict, Invalid, NotFound
from tideflow.ids import new_id
from tideflow.store.models.resources import (
    Destination,
    Pipeline,
    Source,
    Tag,
    Topic,
    Transform,
)


def to_dict(tag: Tag) -> dict[str, Any]:
    return {
        "id": tag.id,
        "name": tag.name,
        "description": tag.description or "",
        "type": list(tag.type or []),
        "system": bool(tag.system),
        "custom": bool(tag.custom),
    }


def split_ids(values: Iterable[str] | None) -> list[str]:
    """``tag_ids`` may be repeated or comma-separated (or both)."""
    out: list[str] = []
    for value in values or ():
        out.extend(p.strip() for p in value.split(",") if p.strip())
    return out


def list_tags(
    ctx: AppContext,
    tag_ids: list[str] | None = None,
    tag_name: str | None = None,
    tag_type: str | None = None,
) -> list[dict[str, Any]]:
    with ctx.store.session() as s:
        stmt = select(Tag).order_by(Tag.system.desc(), Tag.name, Tag.id)
        if tag_ids:
            stmt = stmt.where(Tag.id.in_([t for t in tag_ids if is_object_id(t)]))
        tags = list(s.scalars(stmt))
    if tag_name:
        needle = tag_name.lower()
        tags = [t for t in tags if needle in t.name.lower()]
    if tag_type:
        tags = [t for t in tags if tag_type in (t.type or [])]
    return [to_dict(t) for t in tags]


def check_ids(session: Session, ids: Iterable[str]) -> list[str]:
    """The given tag ids, deduplicated in order; :class:`Invalid` if one does not exist."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return []
    valid = [t for t in wanted if is_object_id(t)]
    known = set(session.scalars(select(Tag.id).where(Tag.id.in_(valid)))) if valid else set()
    missing = [t for t in wanted if t not in known]
    if missing:
        raise Invalid(f"unknown tag id(s): {', '.join(missing)}", code="unknown_tag")
    return wanted


def create(ctx: AppContext, body: TagCreate) -> dict[str, Any]:
    name = body.name.strip()
    if not name:
        raise Invalid("tag name must not be blank")
    try:
        with ctx.store.session() as s:
            _check_unique(s, name)
            tag = Tag(
                id=new_id(),
                name=name,
                description=body.description,
                type=list(dict.fromkeys(body.type)),
                system=False,
                custom=True,
                created_from=body.created_from,
            )
            s.add(tag)
            s.flush()
            return to_dict(tag)
    except IntegrityError:
        raise Invalid(f"tag '{name}' already exists", code="already_exists") from None


def update(ctx: AppContext, tag_id: str, body: TagUpdate) -> dict[str, Any]:
    name = body.name.strip()
    if not name:
        raise Invalid("tag name must not be blank")
    try:
        with ctx.store.session() as s:
            tag = _get(s, tag_id)
            if tag.system:
                raise Conflict(f"tag '{tag.name}' is a built-in system tag and cannot be changed")
            if name != tag.name:
                _check_unique(s, name)
            tag.name = name
            if body.description is not None:
                tag.description = body.description
            if body.type is not None:
                tag.type = list(dict.fromkeys(body.type))
            s.flush()
            return to_dict(tag)
    except IntegrityError:
        raise Invalid(f"tag '{name}' already exists", code="already_exists") from None


def delete(ctx: AppContext, tag_id: str) -> dict[str, Any]:
    with ctx.store.session() as s:
        tag = _get(s, tag_id)
        if tag.system:
            raise Conflict(f"tag '{tag.name}' is a built-in system tag and cannot be deleted")
        users = _users(s, tag_id)
        if users:
            raise Conflict(
                f"tag '{tag.name}' is still attached to {', '.join(users[:5])}"
                + (f" and {len(users) - 5} more" if len(users) > 5 else "")
                + "; remove it from them first"
            )
        out = to_dict(tag)
        s.delete(tag)
        return out


def _get(s: Session, tag_id: str) -> Tag:
    tag = s.get(Tag, tag_id) if is_object_id(tag_id) else None
    if tag is None:
        raise NotFound(f"no tag '{tag_id}'")
    return tag


def _check_unique(s: Session, name: str) -> None:
    if s.scalar(select(Tag.id).where(Tag.name == name)):
        raise Invalid(f"tag '{name}' already exists", code="already_exists")


def _users(s: Session, tag_id: str) -> list[str]:
    users: list[str] = []
    for label, model in (
        ("source", Source),
        ("destination", Destination),
        ("pipeline", Pipeline),
        ("transform", Transform),
    ):
        for row_id, tags in s.execute(select(model.id, model.tags)):
            if tag_id in (tags or []):
                users.append(f"{label} {row_id}")
    for row_id, tags in s.execute(select(Topic.id, Topic.tags)):
        if tag_id in (tags or []):
            users.append(f"topic {row_id}")
    return users
