"""Wire shapes of ``/destinations`` (as in the Streamkap API)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from tideflow.control.resources.wire import ConnectorIn, ConnectorStatus, DesiredState


class DestinationIn(ConnectorIn):
    pass


class DestinationOut(BaseModel):
    id: str
    name: str
    connector: str
    config: dict[str, Any]
    connector_status: ConnectorStatus
    desired_state: DesiredState
    created_timestamp: datetime
    tags: list[str]
    created_from: str
