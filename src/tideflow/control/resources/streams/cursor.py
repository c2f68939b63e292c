"""Opaque keyset cursors for the streams-API lists (``created_at``, ``id`` order)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Select, and_, or_

from tideflow.errors import Invalid


def encode(created_at: datetime, row_id: str) -> str:
    payload = orjson.dumps({"c": _aware(created_at).isoformat(), "i": row_id})
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode()


def decode(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = orjson.loads(raw)
        return datetime.fromisoformat(data["c"]), str(data["i"])
    except (ValueError, KeyError, TypeError):
        raise Invalid(
            "cursor is not valid; pass meta.page.next_cursor of an earlier page"
        ) from None


def after(stmt: Select[Any], model: Any, cursor: str | None) -> Select[Any]:
    """``stmt`` restricted to rows after ``cursor`` and ordered by (created_at, id)."""
    if cursor:
        created_at, row_id = decode(cursor)
        stmt = stmt.where(
            or_(
                model.created_at > created_at,
                and_(model.created_at == created_at, model.id > row_id),
            )
        )
    return stmt.order_by(model.created_at.asc(), model.id.asc())


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def iso(dt: datetime | None) -> str | None:
    """An ISO-8601 UTC timestamp with a ``Z`` suffix (SQLite hands back naive UTC values)."""
    if dt is None:
        return None
    return _aware(dt).astimezone(UTC).isoformat().replace("+00:00", "Z")
