"""Wire shapes of /api/streams (Planasonix style: JSON:API-like envelopes, cursor pages)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tideflow.control.resources.connections.schemas import DeletedDocument as DeletedDocument
from tideflow.control.resources.connections.schemas import ListMeta
from tideflow.control.resources.wire import Body

StreamStatus = Literal["created", "starting", "running", "paused", "stopped", "error"]
STATUSES: tuple[str, ...] = ("created", "starting", "running", "paused", "stopped", "error")
Window = Literal["1m", "5m", "1h", "24h"]


class StreamCreate(Body):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    name: str = Field(min_length=1, max_length=255, description="Unique within the workspace.")
    source_type: str = Field(
        alias="sourceType",
        min_length=1,
        max_length=64,
        description="postgres_cdc, mysql_cdc, mariadb_cdc, kafka or webhook (each needs its "
        "source connector to be installed; others are refused with 422).",
    )
    pipeline_id: str = Field(
        alias="pipelineId", min_length=1, max_length=64, description="Pipeline fed by the stream."
    )
    connection_id: str | None = Field(
        None,
        alias="connectionId",
        max_length=64,
        description="Stored connection (required for CDC and Kafka streams).",
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description='Type-specific options, e.g. {"publication": "...", "slot_name": "...", '
        '"tables": ["public.orders"]}; dotted connector keys are accepted too.',
    )


class StreamAttributes(BaseModel):
    name: str
    source_type: str
    source_id: str = Field(description="The same object's id in the platform API (/sources).")
    connector: str
    pipeline_id: str | None
    connection_id: str | None
    status: StreamStatus
    status_message: str | None = Field(
        description="The runtime's message: why the stream is in error, or what it is retrying."
    )
    worker_id: str | None = Field(
        None,
        description="The worker running this unit: the lease holder in cluster mode, `embedded` in "
        "single-process mode; null while the unit moves between workers or before a "
        "worker took it.",
    )
    desired_state: str
    config: dict[str, Any]
    topics: list[str]
    created_at: datetime
    updated_at: datetime


class StreamResource(BaseModel):
    id: str
    type: Literal["stream"] = "stream"
    attributes: StreamAttributes


class StreamDocument(BaseModel):
    data: StreamResource


class StreamListDocument(BaseModel):
    data: list[StreamResource]
    meta: ListMeta


class ActionAttributes(BaseModel):
    status: StreamStatus
    desired_state: str
    updated_at: datetime


class ActionResource(BaseModel):
    id: str
    type: Literal["stream"] = "stream"
    attributes: ActionAttributes


class ActionDocument(BaseModel):
    data: ActionResource


class SummaryAttributes(BaseModel):
    total: int
    by_status: dict[str, int]
    approx_events_per_minute: int = Field(
        description="Events read per minute over the last 5 minutes, from stored metrics "
        "(0 and metrics_available false when nothing was measured)."
    )
    metrics_available: bool
    computed_at: datetime


class SummaryResource(BaseModel):
    type: Literal["streams_summary"] = "streams_summary"
    attributes: SummaryAttributes


class SummaryDocument(BaseModel):
    data: SummaryResource


class MetricsAttributes(BaseModel):
    stream_id: str
    status: StreamStatus
    events_per_second: float
    bytes_per_second: float
    lag_seconds: float | None
    error_rate_per_minute: float
    last_event_at: datetime | None
    window: Window
    measured: bool = Field(
        description="False: no stored metrics in the window (the stream has not run); the rates "
        "are 0 and lag/last event are null rather than estimates."
    )
    computed_at: datetime


class MetricsResource(BaseModel):
    id: str
    type: Literal["stream_metrics"] = "stream_metrics"
    attributes: MetricsAttributes


class MetricsDocument(BaseModel):
    data: MetricsResource


class StreamErrorItem(BaseModel):
    status: str
    code: str
    title: str
    detail: str | list[dict[str, Any]]


class StreamErrors(BaseModel):
    errors: list[StreamErrorItem]


def _error(description: str) -> dict[str, Any]:
    return {"model": StreamErrors, "description": description}


STREAM_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: _error("Missing, invalid or expired token"),
    403: _error("The caller's role may not do this"),
    404: _error("Unknown route or id"),
    409: _error("The action conflicts with the current state"),
    422: _error("Invalid input (the detail names the field)"),
    429: _error("Rate limited; retry after the Retry-After header"),
}
