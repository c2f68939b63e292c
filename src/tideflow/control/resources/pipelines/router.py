"""``/pipelines``: thin handlers over :mod:`.service`.

Pipelines hold no secrets; ``secret_returned`` is accepted (every platform call takes it) and
has no effect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from tideflow.control.auth.deps import Authenticated, Writer
from tideflow.control.context import get_ctx
from tideflow.control.resources.common import ListParams, list_params
from tideflow.control.resources.pipelines import service
from tideflow.control.resources.pipelines.schemas import PipelineIn, PipelineOut
from tideflow.control.resources.wire import ACTIONS, ERROR_RESPONSES, Page, SecretReturned

# Responses leave out what the client left out of the echoed objects (exact echo).
router = APIRouter(prefix="/pipelines", tags=["pipelines"], responses=ERROR_RESPONSES)


@router.get(
    "",
    response_model=Page[PipelineOut],
    response_model_exclude_unset=True,
    summary="List pipelines",
)
def list_pipelines(
    _: Authenticated,
    request: Request,
    params: Annotated[ListParams, Depends(list_params)],
    secret_returned: SecretReturned = False,
) -> Page[PipelineOut]:
    return service.list_(get_ctx(request), params)


@router.post(
    "",
    response_model=PipelineOut,
    response_model_exclude_unset=True,
    summary="Create a pipeline (it starts at once)",
)
def create_pipeline(
    body: PipelineIn, _: Writer, request: Request, secret_returned: SecretReturned = False
) -> PipelineOut:
    return service.create(get_ctx(request), body)


@router.get(
    "/{pipeline_id}",
    response_model=Page[PipelineOut],
    response_model_exclude_unset=True,
    summary="Get a pipeline (list envelope; an unknown id gives an empty result)",
)
def get_pipeline(
    pipeline_id: str, _: Authenticated, request: Request, secret_returned: SecretReturned = False
) -> Page[PipelineOut]:
    return service.get(get_ctx(request), pipeline_id)


@router.put(
    "/{pipeline_id}",
    response_model=PipelineOut,
    response_model_exclude_unset=True,
    summary="Replace a pipeline",
)
def update_pipeline(
    pipeline_id: str,
    body: PipelineIn,
    _: Writer,
    request: Request,
    secret_returned: SecretReturned = False,
) -> PipelineOut:
    return service.update(get_ctx(request), pipeline_id, body)


@router.delete(
    "/{pipeline_id}",
    response_model=PipelineOut,
    response_model_exclude_unset=True,
    summary="Stop and delete a pipeline",
)
def delete_pipeline(
    pipeline_id: str, _: Writer, request: Request, secret_returned: SecretReturned = False
) -> PipelineOut:
    return service.delete(get_ctx(request), pipeline_id)


def _action(state: str) -> Callable[..., PipelineOut]:
    def act(
        pipeline_id: str, _: Writer, request: Request, secret_returned: SecretReturned = False
    ) -> PipelineOut:
        return service.set_desired_state(get_ctx(request), pipeline_id, state)

    return act


for _name, _state in ACTIONS.items():
    router.add_api_route(
        f"/{{pipeline_id}}/{_name}",
        _action(_state),
        methods=["POST"],
        response_model=PipelineOut,
        response_model_exclude_unset=True,
        summary=f"{_name.capitalize()} a pipeline (desired state {_state})",
        operation_id=f"{_name}_pipeline",
    )
