"""HTTP routes of /api/connections (mounted at "" and "/v1")."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from tideflow.control.auth.deps import Authenticated, Writer
from tideflow.control.context import get_ctx
from tideflow.control.resources.connections import schemas, service
from tideflow.control.resources.streams.schemas import STREAM_ERROR_RESPONSES

router = APIRouter(
    prefix="/api/connections", tags=["connections"], responses=STREAM_ERROR_RESPONSES
)


@router.get("", response_model=schemas.ConnectionListDocument)
def list_connections(
    _: Authenticated,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> dict[str, Any]:
    items, next_cursor = service.list_connections(get_ctx(request), limit, cursor)
    page = {"limit": limit, "cursor": next_cursor, "next_cursor": next_cursor}
    return {"data": items, "meta": {"page": {**page, "has_more": next_cursor is not None}}}


@router.post("", response_model=schemas.ConnectionDocument, status_code=201)
def create_connection(
    body: schemas.ConnectionCreate, _: Writer, request: Request
) -> dict[str, Any]:
    return {"data": service.create(get_ctx(request), body)}


@router.get("/{connection_id}", response_model=schemas.ConnectionDocument)
def get_connection(connection_id: str, _: Authenticated, request: Request) -> dict[str, Any]:
    return {"data": service.get(get_ctx(request), connection_id)}


@router.patch("/{connection_id}", response_model=schemas.ConnectionDocument)
def patch_connection(
    connection_id: str, body: schemas.ConnectionUpdate, _: Writer, request: Request
) -> dict[str, Any]:
    return {"data": service.update(get_ctx(request), connection_id, body)}


@router.put("/{connection_id}", response_model=schemas.ConnectionDocument)
def put_connection(
    connection_id: str, body: schemas.ConnectionUpdate, _: Writer, request: Request
) -> dict[str, Any]:
    return {"data": service.update(get_ctx(request), connection_id, body)}


@router.delete("/{connection_id}", response_model=schemas.DeletedDocument)
def delete_connection(connection_id: str, _: Writer, request: Request) -> dict[str, Any]:
    return {"data": service.delete(get_ctx(request), connection_id)}
