"""Wire shapes of ``/sources`` (as in the Streamkap API)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tideflow.control.resources.wire import ConnectorIn, ConnectorStatus, DesiredState


class SourceIn(ConnectorIn):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "orders-db",
                    "connector": "postgresql",
                    "config": {
                        "database.hostname.user.defined": "db.internal",
                        "database.port.user.defined": 5432,
                        "database.user": "cdc",
                        "database.password": "secret",
                        "database.dbname": "shop",
                        "table.include.list.user.defined": "public.orders,public.customers",
                    },
                    "created_from": "api",
                    "tags": ["670e5ca40afe1d3983ce0c22"],
                }
            ]
        }
    )


class SourceOut(BaseModel):
    id: str
    name: str
    connector: str
    config: dict[str, Any]
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
    desired_state: DesiredState
    created_timestamp: datetime
    tags: list[str]
    created_from: str
    topic_ids: list[str] = Field(description="Ids of the captured tables' topics.")
    topics: list[str] = Field(description="Captured tables, as schema.table.")
