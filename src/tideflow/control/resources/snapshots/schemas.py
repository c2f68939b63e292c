"""Wire shapes of the snapshot API (``COMPATIBILITY.md``, Snapshots)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from tideflow.control.resources.wire import Body

SnapshotType = Literal["incremental", "blocking"]


class Condition(BaseModel):
    data_collection: str = Field(max_length=255, description="schema.table")
    filter: str = Field(max_length=4000, description="SQL predicate restricting the rows read")


class SnapshotIn(Body):
    source_id: str = Field(max_length=64)
    topic_names: list[str] | None = Field(
        None, description="schema.table names; null = every table of the source"
    )
    additional_conditions: list[Condition] | None = None
    snapshot_type: SnapshotType = "incremental"
    surrogate_key: str | None = Field(
        None, max_length=255, description="Column(s) to chunk by instead of the primary key"
    )


class CancelIn(Body):
    source_id: str = Field(max_length=64)
    topic_names: list[str] | None = None
    additional_conditions: list[Condition] | None = None
    surrogate_key: str | None = None


class BulkIn(Body):
    topic_ids: list[str] = Field(min_length=1, max_length=1000)
    snapshot_type: SnapshotType = "incremental"


class TopicSnapshot(BaseModel):
    id: str
    topic_id: str
    topic_name: str
    status: str
    snapshot_type: SnapshotType
    filter: str | None = None
    surrogate_key: str | None = None
    rows_read: int
    rows_total: int = Field(description="Estimate (Postgres: pg_class.reltuples)")
    rows_per_second: float | None = None
    eta_seconds: float | None = None
    chunks_done: int
    message: str = ""
    submit_timestamp: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None


class SnapshotOut(BaseModel):
    source_id: str
    request_id: str | None = None
    status: str = Field(description="Overall: running while any topic is pending or running")
    topics: list[TopicSnapshot]


class BulkSourceResult(BaseModel):
    source_id: str
    ok: bool
    status_code: int
    message: str = ""
    snapshot: SnapshotOut | None = None


class BulkOut(BaseModel):
    results: list[BulkSourceResult]
    summary: dict[str, int]
