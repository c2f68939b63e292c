"""Config model of the ``postgresql`` destination (keys as in the Streamkap API)."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from tideflow.connectors.config import ConnectorConfig, setting
from tideflow.connectors.registry import ConnectorSpec, register


class PostgresDestinationConfig(ConnectorConfig):
    hostname: str = setting(
        key="database.hostname.user.defined",
        display_name="Hostname",
        description="Host name or IP address of the destination Postgres server.",
    )
    port: int = setting(
        5432,
        key="database.port.user.defined",
        display_name="Port",
        description="TCP port of the destination Postgres server.",
    )
    database: str = setting(
        key="database.database.user.defined",
        display_name="Database",
        description="Database to write into.",
    )
    username: str = setting(
        key="connection.username",
        display_name="Username",
        description="User allowed to create tables in the target schema.",
    )
    password: str = setting(
        key="connection.password",
        display_name="Password",
        secret=True,
        description="Password of the destination user.",
    )
    sslmode: Literal["require", "disable", "prefer", "verify-ca", "verify-full"] = setting(
        "prefer",
        key="database.sslmode",
        display_name="SSL mode",
        description="libpq sslmode for connections to the destination.",
    )
    schema_name: str = setting(
        "public",
        key="table.name.prefix",
        display_name="Target schema",
        description="Schema the destination tables are created in (created when missing).",
    )
    insert_mode: Literal["insert", "upsert"] = setting(
        "upsert",
        key="insert.mode",
        display_name="Insert mode",
        description="insert appends rows; upsert inserts or updates by primary key.",
    )
    delete_enabled: bool = setting(
        True,
        key="delete.enabled",
        display_name="Apply deletes",
        description="Delete destination rows on source deletes (needs a primary key).",
    )
    soft_delete: bool = setting(
        False,
        key="delete.soft.user.defined",
        display_name="Soft deletes",
        description="Mark deleted rows with __deleted=true instead of removing them.",
    )
    primary_key_mode: Literal["record_key", "record_value", "none"] = setting(
        "record_key",
        key="primary.key.mode",
        display_name="Primary key mode",
        description="Where the destination primary key comes from.",
    )
    primary_key_fields: str | None = setting(
        None,
        key="primary.key.fields",
        display_name="Primary key fields",
        description="Comma-separated columns forming the key with record_value mode.",
    )
    schema_evolution: Literal["basic", "none"] = setting(
        "basic",
        key="schema.evolution",
        display_name="Schema evolution",
        description="basic adds new columns (dropped columns are kept and left NULL).",
    )
    tasks_max: int = setting(
        1,
        key="tasks.max",
        display_name="Tasks",
        description="Parallel writers (reserved; writes are ordered per key).",
    )
    quote_identifiers: bool = setting(
        True,
        key="quote.identifiers",
        display_name="Quote identifiers",
        description="Quote table and column names (keeps case and special characters).",
    )
    metadata_columns: bool = setting(
        True,
        key="metadata.columns.user.defined",
        display_name="Metadata columns",
        description="Add __source_ts_ms and __source_lsn columns (the LSN also guards replays).",
    )
    snapshot_load_connections: int = setting(
        2,
        key="snapshot.load.connections",
        display_name="Snapshot load connections",
        description=(
            "Connections loading parts of one snapshot chunk at the same time (keyed tables). "
            "More use more cores of the destination server, at the price of more CPU per row "
            "and a less compact primary-key index; 1 loads with the least CPU."
        ),
    )

    @field_validator("snapshot_load_connections")
    @classmethod
    def _load_connections(cls, value: int) -> int:
        if not 1 <= value <= 8:
            raise ValueError("must be between 1 and 8")
        return value


register(
    ConnectorSpec(
        code="postgresql",
        kind="destination",
        display_name="PostgreSQL",
        config_model=PostgresDestinationConfig,
        implementation="tideflow.connectors.destinations.postgres.destination:PostgresDestination",
    )
)
