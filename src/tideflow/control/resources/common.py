"""Shared rules of the platform API's list and get-by-id endpoints.

List endpoints take ``page`` (1-based), ``page_size`` (default 10, max 100), ``sort``,
``sort_dir`` and ``partial_name`` and answer ``{"result", "page", "page_size", "total",
"has_next"}``. GET by id answers the same envelope with zero or one element (an unknown id is
``200`` with ``"result": []``, which clients use to notice deletion).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from tideflow.errors import Invalid

T = TypeVar("T")

SORTABLE = {
    "name": "name",
    "created_at": "created_at",
    "created_timestamp": "created_at",
    "updated_at": "updated_at",
    "id": "id",
}


@dataclass(frozen=True)
class ListParams:
    page: int = 1
    page_size: int = 10
    sort: str | None = None
    sort_dir: Literal["asc", "desc"] = "asc"
    partial_name: str | None = None


def list_params(
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=100)] = 10,
    sort: Annotated[str | None, Query(max_length=64)] = None,
    sort_dir: Annotated[Literal["asc", "desc"], Query()] = "asc",
    partial_name: Annotated[str | None, Query(max_length=255, pattern=r"^[^\x00]*$")] = None,
) -> ListParams:
    """FastAPI dependency for the list query parameters."""
    return ListParams(page, page_size, sort, sort_dir, partial_name)


class ListEnvelope(BaseModel):
    result: list[Any]
    page: int
    page_size: int
    total: int
    has_next: bool


def paginate(
    session: Session, model: type[T], params: ListParams, where: Select[Any] | None = None
) -> tuple[list[T], int]:
    """Rows of ``model`` for one page, and the total matching count."""
    stmt = where if where is not None else select(model)
    column = getattr(model, "name", None)
    if params.partial_name and column is not None:
        escaped = params.partial_name.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")
        stmt = stmt.where(column.ilike(f"%{escaped}%", escape="\\"))
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    sort_key = params.sort or "created_at"
    attr_name = SORTABLE.get(sort_key)
    if attr_name is None or not hasattr(model, attr_name):
        raise Invalid(f"cannot sort by '{sort_key}'; use one of: name, created_at")
    attr = getattr(model, attr_name)
    order = attr.desc() if params.sort_dir == "desc" else attr.asc()
    tiebreak = model.id.asc()  # type: ignore[attr-defined]
    stmt = stmt.order_by(order, tiebreak).offset((params.page - 1) * params.page_size)
    rows = list(session.scalars(stmt.limit(params.page_size)))
    return rows, int(total)


def envelope(items: list[Any], params: ListParams, total: int) -> dict[str, Any]:
    return {
        "result": items,
        "page": params.page,
        "page_size": params.page_size,
        "total": total,
        "has_next": params.page * params.page_size < total,
    }


def single(item: Any | None) -> dict[str, Any]:
    """The get-by-id envelope: zero or one element."""
    items = [] if item is None else [item]
    return {"result": items, "page": 1, "page_size": 10, "total": len(items), "has_next": False}
