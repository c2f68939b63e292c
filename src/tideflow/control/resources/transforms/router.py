"""HTTP routes of /transforms."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from tideflow.control.auth.deps import Authenticated, Writer
from tideflow.control.context import get_ctx
from tideflow.control.resources import common
from tideflow.control.resources.transforms import schemas, service
from tideflow.control.resources.wire import ERROR_RESPONSES
from tideflow.engine.transforms.trial import CodeError

router = APIRouter(prefix="/transforms", tags=["transforms"], responses=ERROR_RESPONSES)

Params = Annotated[common.ListParams, Depends(common.list_params)]


@router.get("", response_model=schemas.TransformList)
def list_transforms(_: Authenticated, request: Request, params: Params) -> dict[str, Any]:
    items, total = service.list_transforms(get_ctx(request), params)
    return common.envelope(items, params, total)


@router.post("", response_model=schemas.TransformOut)
def create_transform(body: schemas.TransformCreate, _: Writer, request: Request) -> dict[str, Any]:
    return service.create(get_ctx(request), body)


@router.put("", response_model=schemas.TransformOut)
def update_transform(body: schemas.TransformUpdate, _: Writer, request: Request) -> dict[str, Any]:
    return service.update(get_ctx(request), body)


@router.delete("", response_model=schemas.TransformOut)
def delete_transform(
    _: Writer, request: Request, id: Annotated[str, Query(min_length=1, max_length=64)]
) -> dict[str, Any]:
    return service.delete(get_ctx(request), id)


@router.get("/{transform_id}", response_model=schemas.TransformList)
def get_transform(transform_id: str, _: Authenticated, request: Request) -> dict[str, Any]:
    return common.single(service.get(get_ctx(request), transform_id))


@router.get("/{transform_id}/implementation_details", response_model=schemas.ImplementationDetails)
def get_implementation(transform_id: str, _: Authenticated, request: Request) -> dict[str, Any]:
    return service.implementation_details(get_ctx(request), transform_id)


@router.put("/{transform_id}/implementation_details", response_model=schemas.ImplementationVersion)
def put_implementation(
    transform_id: str, body: schemas.ImplementationUpdate, _: Writer, request: Request
) -> dict[str, Any]:
    return service.save_implementation(get_ctx(request), transform_id, body)


@router.put("/{transform_id}/deploy-job-preview/{version_id}", response_model=schemas.Deployment)
def deploy_preview(
    transform_id: str,
    version_id: str,
    _: Writer,
    request: Request,
    replay_window: Annotated[
        str | None, Query(max_length=16, description="Accepted; replay starts with execution.")
    ] = None,
) -> dict[str, Any]:
    return service.deploy(get_ctx(request), transform_id, "preview", version_id)


@router.put("/{transform_id}/deploy-job-live/{version_id}", response_model=schemas.Deployment)
def deploy_live(transform_id: str, version_id: str, _: Writer, request: Request) -> dict[str, Any]:
    return service.deploy(get_ctx(request), transform_id, "live", version_id)


@router.get("/{transform_id}/job_status", response_model=schemas.JobStatus)
def job_status(transform_id: str, _: Authenticated, request: Request) -> dict[str, Any]:
    return service.job_status(get_ctx(request), transform_id)


@router.post(
    "/{transform_id}/test",
    response_model=schemas.TransformTestResult,
    responses={
        422: {
            "model": schemas.TransformTestError,
            "description": "The code does not load or fails on a record (with its line), "
            "or the body is invalid",
        }
    },
)
def test_transform(
    transform_id: str, body: schemas.TransformTest, _: Writer, request: Request
) -> Any:
    """Run the transform on sample records in the same sandbox pipelines use."""
    try:
        return service.test(get_ctx(request), transform_id, body)
    except CodeError as exc:
        error = {
            "detail": exc.describe(),
            "code": "transform_code_error",
            "line": exc.line,
            "record": exc.record,
        }
        return JSONResponse(error, status_code=422)
