"""Wire shapes of ``/destinations`` (as in the Streamkap API)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from tideflow.control.resources.wire import ConnectorIn, ConnectorStatus, DesiredState


class DestinationIn(ConnectorIn):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "warehouse",
                    "connector": "postgresql",
                    "config": {
                        "database.hostname.user.defined": "warehouse.internal",
                        "database.port.user.defined": 5432,
                        "database.database.user.defined": "dwh",
                        "connection.username": "loader",
                        "connection.password": "secret",
                        "table.name.prefix": "analytics",
                        "insert.mode": "upsert",
                    },
                }
            ]
        }
    )


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
