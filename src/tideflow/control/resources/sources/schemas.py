"""Wire shapes of ``/sources`` (as in the Streamkap API)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from tideflow.control.resources.wire import ConnectorIn, ConnectorStatus, DesiredState


class SourceIn(ConnectorIn):
    pass


class SourceOut(BaseModel):
    id: str
    name: str
    connector: str
    config: dict[str, Any]
    connector_status: ConnectorStatus
    desired_state: DesiredState
    created_timestamp: datetime
    tags: list[str]
    created_from: str
    topic_ids: list[str] = Field(description="Ids of the captured tables' topics.")
    topics: list[str] = Field(description="Captured tables, as schema.table.")
