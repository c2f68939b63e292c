"""Wire shapes of /transforms (as the Streamkap API and its Terraform provider use them)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from tideflow.control.resources.wire import Body

TransformType = Literal["map_filter", "enrich", "sql_join", "rollup", "fan_out", "topic_router"]
TRANSFORM_TYPES: tuple[str, ...] = (
    "map_filter",
    "enrich",
    "sql_join",
    "rollup",
    "fan_out",
    "topic_router",
)
CreatedFrom = Literal["terraform", "web", "api"]


class TransformCreate(Body):
    transform: TransformType = Field(description="Transform type.")
    config: dict[str, Any] = Field(
        description="Flat map with dotted keys: transforms.name (required), transforms.language "
        "(Python|JavaScript), transforms.input.topic.pattern and transforms.output.topic.pattern "
        "(regular expressions), … Stored verbatim."
    )
    implementation: dict[str, Any] | None = Field(
        None, description="Optional first implementation version (see implementation_details)."
    )
    created_from: CreatedFrom = "api"
    tags: list[str] = Field(default_factory=list, description="Tag ids.")


class TransformUpdate(Body):
    id: str = Field(min_length=1, max_length=64)
    transform: TransformType | None = None
    config: dict[str, Any]
    implementation: dict[str, Any] | None = Field(
        None, description="When it differs from the latest version, a new version is saved."
    )
    created_from: CreatedFrom | None = None
    tags: list[str] | None = None


class TransformOut(BaseModel):
    id: str
    name: str
    transform: str
    transform_type: str
    status: str = Field(
        description="NOT_DEPLOYED or DEPLOYED_NOT_RUNNING: transform execution is not available "
        "in this release, so a transform never reports RUNNING."
    )
    config: dict[str, Any]
    implementation: dict[str, Any] | None
    version: int = Field(description="Latest saved implementation version (0 = none yet).")
    preview_version: int | None
    live_version: int | None
    topic_ids: list[str]
    topics: list[str]
    start_time: datetime | None = Field(description="Always null: no transform job runs yet.")
    tags: list[str]
    created_from: str
    created_at: datetime
    updated_at: datetime


class TransformList(BaseModel):
    result: list[TransformOut]
    page: int
    page_size: int
    total: int
    has_next: bool


class ImplementationUpdate(Body):
    transform_id: str | None = None
    version_id: str | None = Field(None, description="Ignored: every PUT saves a new version.")
    description: str | None = Field(None, max_length=2000)
    implementation: dict[str, Any] = Field(
        description='e.g. {"language": "Python", "value_transform": "def _streamkap_transform('
        'valueObject, keyObject, topic, timestamp): ...", "key_transform": "", '
        '"topic_transform": ""}'
    )
    config: dict[str, Any] | None = None


class ImplementationVersion(BaseModel):
    transform_id: str
    version_id: str
    description: str | None
    implementation: dict[str, Any]
    config: dict[str, Any] | None
    created_at: datetime


class ImplementationDetails(BaseModel):
    transform_id: str
    impl_versions: dict[str, ImplementationVersion]
    latest_version: str | None
    preview_version: str | None
    live_version: str | None


class Deployment(BaseModel):
    id: str
    transform_id: str
    target: Literal["preview", "live"]
    version: int
    deployed_at: datetime
    status: str
    running: bool
    message: str


class JobStatus(BaseModel):
    id: str
    job_name: str
    status: str = Field(
        description="RUNNING while an Active pipeline executes it, else NOT_DEPLOYED or "
        "DEPLOYED_NOT_RUNNING."
    )
    start_time: datetime | None
    running: bool
    execution_available: bool
    live_version: int | None
    preview_version: int | None
    message: str


class SampleRecord(BaseModel):
    value: dict[str, Any] = Field(description="The row image the value function receives.")
    key: dict[str, Any] = Field(default_factory=dict, description="The record key.")
    topic: str = Field("public.sample", min_length=1, max_length=512, description="schema.table")
    timestamp: int = Field(0, description="Commit time, epoch milliseconds.")


class TransformTest(Body):
    records: list[SampleRecord] = Field(min_length=1, max_length=1000)
    version: int | None = Field(
        None, ge=1, description="Implementation version to run; default: live, else latest."
    )


class SampleOutput(BaseModel):
    topic: str
    key: dict[str, Any]
    value: dict[str, Any]


class SampleResult(BaseModel):
    index: int
    dropped: bool = Field(description="The transform (or a builtin filter) dropped the record.")
    outputs: list[SampleOutput] = Field(description="One per topic; several when it fans out.")


class TransformTestResult(BaseModel):
    transform_id: str
    version: int | None = Field(description="None when only builtin operations ran.")
    language: str
    results: list[SampleResult]


class TransformTestError(BaseModel):
    """A code error (``transform_code_error`` with line and record) or, for an invalid body,
    the usual validation error list."""

    detail: str | list[Any]
    code: str = Field(description="transform_code_error, or invalid for a malformed body")
    line: int | None = Field(None, description="Line in the transform's code, when known.")
    record: int | None = Field(None, description="Index of the failing record; None: load failed.")
