"""Wire shapes of ``/pipelines`` (as in the Streamkap API).

The ``source``, ``destination`` and ``transforms`` objects are echoed back as the client sent
them (unknown fields included), so a client can compare what it wrote with what it reads.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from tideflow.control.resources.wire import (
    Body,
    ConnectorStatus,
    CreatedFrom,
    DesiredState,
    Name,
)


class _Echoed(BaseModel):
    model_config = ConfigDict(extra="allow")


class PipelineSource(_Echoed):
    id: str = Field(min_length=1, max_length=64, description="Id of an existing source.")
    name: str | None = Field(None, max_length=255)
    connector: str | None = Field(None, max_length=64)
    topics: list[str] = Field(
        default_factory=list,
        max_length=10_000,
        description="Topics (schema.table names or topic ids) of the source to carry.",
    )


class PipelineDestination(_Echoed):
    id: str = Field(min_length=1, max_length=64, description="Id of an existing destination.")
    name: str | None = Field(None, max_length=255)
    connector: str | None = Field(None, max_length=64)


class PipelineTransform(_Echoed):
    """One (transform, topic) pair: transforms are unwound, one element per topic."""

    id: str = Field(min_length=1, max_length=64, description="Id of an existing transform.")
    name: str | None = Field(None, max_length=255)
    start_time: str | None = Field(None, max_length=64)
    topic_id: str | None = Field(None, max_length=512)
    topic: str | None = Field(None, max_length=512)


class PipelineIn(Body):
    name: Name
    snapshot_new_tables: bool = Field(
        False, description="Snapshot the selected topics on creation and when topics are added."
    )
    source: PipelineSource
    destination: PipelineDestination
    transforms: list[PipelineTransform] | None = Field(None, max_length=1000)
    created_from: CreatedFrom = Field(
        "api", description="Where the object was made; omitted on PUT keeps the stored value."
    )
    tags: list[str] | None = Field(
        None, max_length=100, description="Tag ids; omitted on PUT keeps the current tags."
    )


class PipelineOut(BaseModel):
    id: str
    name: str
    snapshot_new_tables: bool
    source: PipelineSource
    destination: PipelineDestination
    transforms: list[PipelineTransform]
    tags: list[str]
    created_from: str
    connector_status: ConnectorStatus
    health: str | None = Field(None, description="healthy | warning | critical (docs/metrics.md)")
    connector_status_message: str | None = Field(
        None,
        description="Why the runtime reports this status (the error of a Broken unit, the "
        "retry reason of a Starting one); null when there is nothing to say.",
    )
    worker_id: str | None = Field(
        None,
        description="The worker running this unit: the lease holder in cluster mode, `embedded` in "
        "single-process mode; null while the unit moves between workers or before a "
        "worker took it.",
    )
    worker_ids: list[str] = Field(
        default_factory=list,
        description="Cluster mode, a pipeline split into shards (`cluster.shards` in its "
        "`destination` object): the workers holding its shards, in shard order (`worker_id` is "
        "the first); empty otherwise.",
    )
    desired_state: DesiredState
    created_timestamp: datetime
