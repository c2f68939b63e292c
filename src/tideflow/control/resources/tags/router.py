"""HTTP routes of /tags."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from tideflow.control.auth.deps import Authenticated, Writer
from tideflow.control.context import get_ctx
from tideflow.control.resources.tags import service
from tideflow.control.resources.tags.schemas import TagCreate, TagList, TagOut, TagUpdate
from tideflow.control.resources.wire import ERROR_RESPONSES

router = APIRouter(prefix="/tags", tags=["tags"], responses=ERROR_RESPONSES)


@router.get("", response_model=TagList)
def list_tags(
    _: Authenticated,
    request: Request,
    tag_ids: Annotated[list[str] | None, Query(description="Repeated or comma-separated.")] = None,
    tag_name: Annotated[str | None, Query(max_length=255)] = None,
    tag_type: Annotated[str | None, Query(max_length=32)] = None,
) -> dict[str, Any]:
    tags = service.list_tags(get_ctx(request), service.split_ids(tag_ids), tag_name, tag_type)
    return {"tags": tags}


@router.post("", response_model=TagOut)
def create_tag(body: TagCreate, _: Writer, request: Request) -> dict[str, Any]:
    return service.create(get_ctx(request), body)


@router.put("/{tag_id}", response_model=TagOut)
def update_tag(tag_id: str, body: TagUpdate, _: Writer, request: Request) -> dict[str, Any]:
    return service.update(get_ctx(request), tag_id, body)


@router.delete("/{tag_id}", response_model=TagOut)
def delete_tag(tag_id: str, _: Writer, request: Request) -> dict[str, Any]:
    return service.delete(get_ctx(request), tag_id)
