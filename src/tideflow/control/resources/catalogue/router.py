"""The connector catalogue. Included before the sources and destinations routers so that
``/sources/connectors`` wins over ``/sources/{id}``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from tideflow.control.auth.deps import Authenticated
from tideflow.control.resources.catalogue import service
from tideflow.control.resources.catalogue.schemas import ConnectorOut
from tideflow.control.resources.common import ListParams, list_params
from tideflow.control.resources.wire import ERROR_RESPONSES, Page, SecretReturned

router = APIRouter(tags=["catalogue"], responses=ERROR_RESPONSES)

ConnectorCode = Annotated[
    str | None,
    Query(max_length=64, description="One connector code; all connectors of the kind if omitted."),
]


@router.get(
    "/sources/connectors",
    response_model=Page[ConnectorOut],
    # A key without allowed values or default has no such field, as in the catalogue itself.
    response_model_exclude_unset=True,
    summary="Source connectors and their config keys",
)
def source_connectors(
    _: Authenticated,
    params: Annotated[ListParams, Depends(list_params)],
    connector_code: ConnectorCode = None,
    secret_returned: SecretReturned = False,
) -> Page[ConnectorOut]:
    return service.connectors("source", connector_code, params)


@router.get(
    "/destinations/connectors",
    response_model=Page[ConnectorOut],
    # A key without allowed values or default has no such field, as in the catalogue itself.
    response_model_exclude_unset=True,
    summary="Destination connectors and their config keys",
)
def destination_connectors(
    _: Authenticated,
    params: Annotated[ListParams, Depends(list_params)],
    connector_code: ConnectorCode = None,
    secret_returned: SecretReturned = False,
) -> Page[ConnectorOut]:
    return service.connectors("destination", connector_code, params)
