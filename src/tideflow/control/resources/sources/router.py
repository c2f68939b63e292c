"""``/sources``: thin handlers over :mod:`.service`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from tideflow.control.auth.deps import Authenticated, Writer
from tideflow.control.context import get_ctx
from tideflow.control.resources.common import ListParams, list_params
from tideflow.control.resources.sources import service
from tideflow.control.resources.sources.schemas import SourceIn, SourceOut
from tideflow.control.resources.wire import ACTIONS, ERROR_RESPONSES, Page, SecretReturned

router = APIRouter(prefix="/sources", tags=["sources"], responses=ERROR_RESPONSES)


@router.get("", response_model=Page[SourceOut], summary="List sources")
def list_sources(
    principal: Authenticated,
    request: Request,
    params: Annotated[ListParams, Depends(list_params)],
    secret_returned: SecretReturned = False,
) -> Page[SourceOut]:
    reveal = secret_returned and principal.can_read_secrets
    return service.list_(get_ctx(request), params, reveal=reveal)


@router.post("", response_model=SourceOut, summary="Create a source (it starts at once)")
def create_source(
    body: SourceIn, principal: Writer, request: Request, secret_returned: SecretReturned = False
) -> SourceOut:
    reveal = secret_returned and principal.can_read_secrets
    return service.create(get_ctx(request), body, reveal=reveal)


@router.get(
    "/{source_id}",
    response_model=Page[SourceOut],
    summary="Get a source (list envelope; an unknown id gives an empty result)",
)
def get_source(
    source_id: str,
    principal: Authenticated,
    request: Request,
    secret_returned: SecretReturned = False,
) -> Page[SourceOut]:
    reveal = secret_returned and principal.can_read_secrets
    return service.get(get_ctx(request), source_id, reveal=reveal)


@router.put("/{source_id}", response_model=SourceOut, summary="Replace a source")
def update_source(
    source_id: str,
    body: SourceIn,
    principal: Writer,
    request: Request,
    secret_returned: SecretReturned = False,
) -> SourceOut:
    reveal = secret_returned and principal.can_read_secrets
    return service.update(get_ctx(request), source_id, body, reveal=reveal)


@router.delete(
    "/{source_id}",
    response_model=SourceOut,
    summary="Delete a source and its upstream state (409 while a pipeline uses it)",
)
def delete_source(
    source_id: str,
    principal: Writer,
    request: Request,
    force: Annotated[
        bool, Query(description="Delete even when the upstream cleanup fails.")
    ] = False,
    secret_returned: SecretReturned = False,
) -> SourceOut:
    reveal = secret_returned and principal.can_read_secrets
    return service.delete(get_ctx(request), source_id, force=force, reveal=reveal)


def _action(state: str) -> Callable[..., SourceOut]:
    def act(
        source_id: str,
        principal: Writer,
        request: Request,
        secret_returned: SecretReturned = False,
    ) -> SourceOut:
        reveal = secret_returned and principal.can_read_secrets
        return service.set_desired_state(get_ctx(request), source_id, state, reveal=reveal)

    return act


for _name, _state in ACTIONS.items():
    router.add_api_route(
        f"/{{source_id}}/{_name}",
        _action(_state),
        methods=["POST"],
        response_model=SourceOut,
        summary=f"{_name.capitalize()} a source (desired state {_state})",
        operation_id=f"{_name}_source",
    )
