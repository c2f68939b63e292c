"""``/destinations``: thin handlers over :mod:`.service`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from tideflow.control.auth.deps import Authenticated, Writer
from tideflow.control.context import get_ctx
from tideflow.control.resources.common import ListParams, list_params
from tideflow.control.resources.destinations import service
from tideflow.control.resources.destinations.schemas import DestinationIn, DestinationOut
from tideflow.control.resources.wire import ERROR_RESPONSES, Page, SecretReturned

router = APIRouter(prefix="/destinations", tags=["destinations"], responses=ERROR_RESPONSES)


@router.get("", response_model=Page[DestinationOut], summary="List destinations")
def list_destinations(
    principal: Authenticated,
    request: Request,
    params: Annotated[ListParams, Depends(list_params)],
    secret_returned: SecretReturned = False,
) -> Page[DestinationOut]:
    reveal = secret_returned and principal.can_read_secrets
    return service.list_(get_ctx(request), params, reveal=reveal)


@router.post("", response_model=DestinationOut, summary="Create a destination")
def create_destination(
    body: DestinationIn,
    principal: Writer,
    request: Request,
    secret_returned: SecretReturned = False,
) -> DestinationOut:
    reveal = secret_returned and principal.can_read_secrets
    return service.create(get_ctx(request), body, reveal=reveal)


@router.get(
    "/{destination_id}",
    response_model=Page[DestinationOut],
    summary="Get a destination (list envelope; an unknown id gives an empty result)",
)
def get_destination(
    destination_id: str,
    principal: Authenticated,
    request: Request,
    secret_returned: SecretReturned = False,
) -> Page[DestinationOut]:
    reveal = secret_returned and principal.can_read_secrets
    return service.get(get_ctx(request), destination_id, reveal=reveal)


@router.put("/{destination_id}", response_model=DestinationOut, summary="Replace a destination")
def update_destination(
    destination_id: str,
    body: DestinationIn,
    principal: Writer,
    request: Request,
    secret_returned: SecretReturned = False,
) -> DestinationOut:
    reveal = secret_returned and principal.can_read_secrets
    return service.update(get_ctx(request), destination_id, body, reveal=reveal)


@router.delete(
    "/{destination_id}",
    response_model=DestinationOut,
    summary="Delete a destination (409 while a pipeline writes to it)",
)
def delete_destination(
    destination_id: str,
    principal: Writer,
    request: Request,
    secret_returned: SecretReturned = False,
) -> DestinationOut:
    reveal = secret_returned and principal.can_read_secrets
    return service.delete(get_ctx(request), destination_id, reveal=reveal)
