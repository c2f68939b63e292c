"""Stored connections (host, port, credentials) that streams refer to by ``conn_`` id.

The password is encrypted at rest with the installation's secret box and never returned by the
API. A connection in use by a stream cannot be deleted; changing one rewrites the configs of
the streams using it in the same transaction.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tideflow.control.context import AppContext
from tideflow.control.resources.connections.schemas import ConnectionCreate, ConnectionUpdate
from tideflow.control.resources.streams import cursor as cursors
from tideflow.errors import Conflict, Invalid, NotFound
from tideflow.store.crypto import mask_config, reveal_config, seal_config
from tideflow.store.models.resources import Connection, Source

SECRET_KEYS = frozenset({"password"})
_ID = re.compile(r"conn_[0-9a-f]{16}")
MASK = "********"
FIELDS = ("host", "port", "username", "password", "database", "options")


def new_connection_id() -> str:
    return "conn_" + secrets.token_hex(8)


def _now() -> datetime:
    return datetime.now(UTC)


def to_resource(c: Connection, stream_count: int) -> dict[str, Any]:
    cfg = mask_config(c.config or {}, MASK)
    return {
        "id": c.id,
        "type": "connection",
        "attributes": {
            "name": c.name,
            "kind": c.kind,
            "host": cfg.get("host", ""),
            "port": cfg.get("port"),
            "username": cfg.get("username"),
            "password": MASK if cfg.get("password") is not None else None,
            "has_password": cfg.get("password") is not None,
            "database": cfg.get("database"),
            "options": cfg.get("options") or {},
            "stream_count": stream_count,
            "created_at": cursors.iso(c.created_at),
            "updated_at": cursors.iso(c.updated_at),
        },
    }


def revealed(ctx: AppContext, connection: Connection) -> dict[str, Any]:
    """The connection's settings with the password decrypted (for building stream configs)."""
    return reveal_config(ctx.secrets, connection.config or {})


def get_row(s: Session, connection_id: str) -> Connection:
    c = s.get(Connection, connection_id) if _ID.fullmatch(connection_id) else None
    if c is None:
        raise NotFound(f"no connection '{connection_id}'")
    return c


def list_connections(
    ctx: AppContext, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    with ctx.store.session() as s:
        stmt = cursors.after(select(Connection), Connection, cursor)
        rows = list(s.scalars(stmt.limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        counts = _stream_counts(s, [c.id for c in rows])
        items = [to_resource(c, counts.get(c.id, 0)) for c in rows]
        next_cursor = cursors.encode(rows[-1].created_at, rows[-1].id) if more else None
        return items, next_cursor


def get(ctx: AppContext, connection_id: str) -> dict[str, Any]:
    with ctx.store.session() as s:
        c = get_row(s, connection_id)
        return to_resource(c, _stream_counts(s, [c.id]).get(c.id, 0))


def create(ctx: AppContext, body: ConnectionCreate) -> dict[str, Any]:
    name = _clean_name(body.name)
    settings = {f: getattr(body, f) for f in FIELDS}
    try:
        with ctx.store.session() as s:
            _check_unique(s, name)
            c = Connection(
                id=new_connection_id(),
                name=name,
                kind=body.kind,
                config=seal_config(ctx.secrets, settings, SECRET_KEYS),
            )
            s.add(c)
            s.flush()
            return to_resource(c, 0)
    except IntegrityError:
        raise Invalid(f"connection '{name}' already exists", code="already_exists") from None


def update(ctx: AppContext, connection_id: str, body: ConnectionUpdate) -> dict[str, Any]:
    given = body.model_fields_set
    try:
        with ctx.store.session() as s:
            c = get_row(s, connection_id)
            if "name" in given and body.name is not None:
                name = _clean_name(body.name)
                if name != c.name:
                    _check_unique(s, name)
                c.name = name
            count = _stream_counts(s, [c.id]).get(c.id, 0)
            if "kind" in given and body.kind is not None and body.kind != c.kind:
                if count:
                    raise Conflict(
                        f"connection '{c.name}' is used by {count} stream(s); its kind cannot "
                        "change"
                    )
                c.kind = body.kind
            old = revealed(ctx, c)
            settings = dict(old)
            for f in FIELDS:
                if f in given:
                    value = getattr(body, f)
                    if f == "host" and value is None:
                        raise Invalid("host cannot be null")
                    settings[f] = value if value is not None or f != "options" else {}
            c.config = seal_config(ctx.secrets, settings, SECRET_KEYS)
            c.updated_at = _now()
            if count:
                from tideflow.control.resources.streams import service as streams

                streams.apply_connection(s, ctx, c.id, old, settings)
            s.flush()
            return to_resource(c, count)
    except IntegrityError:
        raise Invalid(f"connection '{body.name}' already exists", code="already_exists") from None


def delete(ctx: AppContext, connection_id: str) -> dict[str, Any]:
    with ctx.store.session() as s:
        c = get_row(s, connection_id)
        users = list(s.scalars(select(Source.stream_id).where(Source.connection_id == c.id)))
        if users:
            raise Conflict(
                f"connection '{c.name}' is used by stream(s) {', '.join(users)}; delete them first"
            )
        s.delete(c)
        return {
            "id": c.id,
            "type": "connection",
            "attributes": {"deleted": True, "deleted_at": cursors.iso(_now())},
        }


def _stream_counts(s: Session, ids: list[str]) -> dict[str, int]:
    if not ids:
        return {}
    rows = s.execute(
        select(Source.connection_id, func.count())
        .where(Source.connection_id.in_(ids))
        .group_by(Source.connection_id)
    )
    return {str(cid): int(n) for cid, n in rows}


def _clean_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise Invalid("name must not be blank")
    return name


def _check_unique(s: Session, name: str) -> None:
    if s.scalar(select(Connection.id).where(Connection.name == name)):
        raise Invalid(f"connection '{name}' already exists", code="already_exists")
