"""Metrics routes: platform API (``/pipelines|sources|destinations/.../metrics``) and
``GET /metrics`` (Prometheus, authenticated like every other route).

Included before the sources/pipelines/destinations routers so ``/pipelines/metrics`` wins
over ``/pipelines/{id}``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from tideflow.control.auth.deps import Authenticated
from tideflow.control.context import get_ctx
from tideflow.control.resources.metrics import prometheus, service
from tideflow.control.resources.wire import ERROR_RESPONSES

router = APIRouter(tags=["metrics"], responses=ERROR_RESPONSES)

TimeType = Literal["latest", "timeseries", "timesummary"]
TimeUnit = Literal["minute", "hour", "day"]


def _ids(ids: list[str] | None) -> list[str]:
    return [i for raw in ids or [] for i in raw.split(",") if i]


def _window(
    time_type: str,
    time_interval: int | None,
    time_unit: str | None,
    timestamp_from: str | None,
    timestamp_to: str | None,
) -> tuple[float, float] | None:
    if time_type == "latest":
        return None
    return service.window_of(time_interval, time_unit, timestamp_from, timestamp_to)


Interval = Annotated[int | None, Query(ge=1, le=100_000)]
Stamp = Annotated[str | None, Query(max_length=64)]


@router.get(
    "/metrics",
    summary="Prometheus exposition",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
        }
    },
)
def prometheus_metrics(_: Authenticated, request: Request) -> Response:
    return Response(prometheus.render(get_ctx(request)), media_type=CONTENT_TYPE_LATEST)


@router.get("/pipelines/metrics", summary="Metrics of several pipelines")
def pipelines_metrics(
    _: Authenticated, request: Request, ids: Annotated[list[str] | None, Query()] = None
) -> dict[str, Any]:
    ctx = get_ctx(request)
    items = [{"id": i, **service.pipeline_metrics(ctx, i)["data"]} for i in _ids(ids)]
    return {"data": items, "metadata": service.pipeline_metadata()}


@router.get("/pipelines/{pipeline_id}/metrics", summary="Pipeline latency, lag and status")
def pipeline_metrics(pipeline_id: str, _: Authenticated, request: Request) -> dict[str, Any]:
    return service.pipeline_metrics(get_ctx(request), pipeline_id)


@router.get("/sources/metrics", summary="Metrics of several sources")
def sources_metrics(
    _: Authenticated,
    request: Request,
    ids: Annotated[list[str] | None, Query()] = None,
    time_type: TimeType = "latest",
    time_interval: Interval = None,
    time_unit: TimeUnit | None = None,
    timestamp_from: Stamp = None,
    timestamp_to: Stamp = None,
) -> dict[str, Any]:
    ctx = get_ctx(request)
    window = _window(time_type, time_interval, time_unit, timestamp_from, timestamp_to)
    got = [service.source_metrics(ctx, i, time_type, window) for i in _ids(ids)]
    return {
        "data": [{"id": i, **g["data"]} for i, g in zip(_ids(ids), got, strict=True)],
        "metadata": got[0]["metadata"] if got else {},
    }


@router.get("/sources/{source_id}/metrics", summary="Source (Debezium-style) metrics")
def source_metrics(
    source_id: str,
    _: Authenticated,
    request: Request,
    time_type: TimeType = "latest",
    time_interval: Interval = None,
    time_unit: TimeUnit | None = None,
    timestamp_from: Stamp = None,
    timestamp_to: Stamp = None,
) -> dict[str, Any]:
    window = _window(time_type, time_interval, time_unit, timestamp_from, timestamp_to)
    return service.source_metrics(get_ctx(request), source_id, time_type, window)


@router.get("/destinations/{destination_id}/metrics", summary="Destination metrics")
def destination_metrics(
    destination_id: str,
    _: Authenticated,
    request: Request,
    time_type: TimeType = "latest",
    time_interval: Interval = None,
    time_unit: TimeUnit | None = None,
    timestamp_from: Stamp = None,
    timestamp_to: Stamp = None,
) -> dict[str, Any]:
    window = _window(time_type, time_interval, time_unit, timestamp_from, timestamp_to)
    return service.destination_metrics(get_ctx(request), destination_id, time_type, window)
