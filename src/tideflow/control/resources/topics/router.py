"""HTTP routes of /topics."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from tideflow.control.auth.deps import Authenticated, Writer
from tideflow.control.context import get_ctx
from tideflow.control.resources import common
from tideflow.control.resources.topics import schemas, service
from tideflow.control.resources.wire import ERROR_RESPONSES

router = APIRouter(prefix="/topics", tags=["topics"], responses=ERROR_RESPONSES)


# Declared before /topics/{topic_id} so "details" is not taken for a topic id.
@router.get("/details", response_model=schemas.TopicList)
def topic_details(
    _: Authenticated,
    request: Request,
    params: Annotated[common.ListParams, Depends(common.list_params)],
    entity_type: Annotated[
        str | None, Query(max_length=32, description="sources, pipelines, destinations, transforms")
    ] = None,
    entity_id: Annotated[list[str] | None, Query(description="Repeatable.")] = None,
    limit: Annotated[int | None, Query(ge=1, le=100)] = None,
    offset: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
) -> dict[str, Any]:
    return service.details(
        get_ctx(request), entity_type, entity_id or [], params, offset=offset, limit=limit
    )


@router.get("/{topic_id}", response_model=schemas.TopicOut)
def get_topic(topic_id: str, _: Authenticated, request: Request) -> dict[str, Any]:
    return service.get(get_ctx(request), topic_id)


@router.put("/{topic_id}", response_model=schemas.TopicOut)
def update_topic(
    topic_id: str, body: schemas.TopicUpdate, _: Writer, request: Request
) -> dict[str, Any]:
    return service.update(get_ctx(request), topic_id, body.payload)
