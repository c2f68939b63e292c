"""HTTP routes of /api/streams (mounted at "" and "/v1")."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from tideflow.control.auth.deps import Authenticated, Writer
from tideflow.control.context import get_ctx
from tideflow.control.resources.streams import schemas, service
from tideflow.control.resources.streams.schemas import STREAM_ERROR_RESPONSES

router = APIRouter(prefix="/api/streams", tags=["streams"], responses=STREAM_ERROR_RESPONSES)


@router.get("", response_model=schemas.StreamListDocument)
def list_streams(
    _: Authenticated,
    request: Request,
    status: Annotated[schemas.StreamStatus | None, Query()] = None,
    source_type: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")] = None,
    pipeline_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> dict[str, Any]:
    items, next_cursor = service.list_streams(
        get_ctx(request),
        status=status,
        source_type=source_type,
        pipeline_id=pipeline_id,
        limit=limit,
        cursor=cursor,
    )
    page = {"limit": limit, "cursor": next_cursor, "next_cursor": next_cursor}
    return {"data": items, "meta": {"page": {**page, "has_more": next_cursor is not None}}}


@router.post("", response_model=schemas.StreamDocument, status_code=201)
def create_stream(body: schemas.StreamCreate, _: Writer, request: Request) -> dict[str, Any]:
    return {"data": service.create(get_ctx(request), body)}


# Declared before /{stream_id} so "summary" is not taken for a stream id.
@router.get("/summary", response_model=schemas.SummaryDocument)
def summary(_: Authenticated, request: Request) -> dict[str, Any]:
    return {"data": service.summary(get_ctx(request))}


@router.get("/{stream_id}", response_model=schemas.StreamDocument)
def get_stream(stream_id: str, _: Authenticated, request: Request) -> dict[str, Any]:
    return {"data": service.get(get_ctx(request), stream_id)}


@router.delete("/{stream_id}", response_model=schemas.DeletedDocument)
def delete_stream(
    stream_id: str,
    _: Writer,
    request: Request,
    force: Annotated[
        bool, Query(description="Delete even if releasing upstream state (slot) fails.")
    ] = False,
) -> dict[str, Any]:
    return {"data": service.delete(get_ctx(request), stream_id, force=force)}


@router.get("/{stream_id}/metrics", response_model=schemas.MetricsDocument)
def stream_metrics(
    stream_id: str,
    _: Authenticated,
    request: Request,
    window: Annotated[schemas.Window, Query()] = "5m",
) -> dict[str, Any]:
    return {"data": service.metrics(get_ctx(request), stream_id, window)}


def _action(action: str) -> Callable[..., dict[str, Any]]:
    def act(stream_id: str, _: Writer, request: Request) -> dict[str, Any]:
        return {"data": service.act(get_ctx(request), stream_id, action)}

    return act


for _name in service.ACTIONS:
    router.add_api_route(
        f"/{{stream_id}}/{_name}",
        _action(_name),
        methods=["POST"],
        response_model=schemas.ActionDocument,
        summary=f"{_name.capitalize()} a stream",
        # No fixed operation_id: the router is mounted twice (/api and /v1/api) and the
        # generated ids, which include the path, stay unique.
        name=f"{_name}_stream",
    )
