"""Config model of the ``mysql`` destination (MySQL and MariaDB; keys as for Postgres)."""

from __future__ import annotations

from typing import Literal

from tideflow.connectors.config import ConnectorConfig, setting
from tideflow.connectors.registry import ConnectorSpec, register


class MySQLDestinationConfig(ConnectorConfig):
    hostname: str = setting(
        key="database.hostname.user.defined",
        display_name="Hostname",
        description="Host name or IP address of the destination MySQL/MariaDB server.",
    )
    port: int = setting(
        3306,
        key="database.port.user.defined",
        display_name="Port",
        description="TCP port of the destination server.",
    )
    database: str = setting(
        key="database.database.user.defined",
        display_name="Database",
        description="Database the tables are written into (created when missing).",
    )
    username: str = setting(
        key="connection.username",
        display_name="Username",
        description="User allowed to create and alter tables in the database.",
    )
    password: str = setting(
        "",
        key="connection.password",
        display_name="Password",
        secret=True,
        description="Password of the destination user.",
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
    schema_evolution: Literal["basic", "none"] = setting(
        "basic",
        key="schema.evolution",
        display_name="Schema evolution",
        description="basic adds new columns (dropped columns are kept and left NULL).",
    )
    table_name_prefix: str = setting(
        "",
        key="table.name.prefix",
        display_name="Table name prefix",
        description="Prefix of destination table names (a table is named <prefix><db>_<table>"
        " when the prefix is set, else <table>).",
    )
    batch_rows: int = setting(
        500,
        key="batch.size",
        display_name="Rows per statement",
        description="Rows per multi-row INSERT statement.",
    )


register(
    ConnectorSpec(
        code="mysql",
        kind="destination",
        display_name="MySQL / MariaDB",
        config_model=MySQLDestinationConfig,
        implementation="tideflow.connectors.destinations.mysql.destination:MySQLDestination",
    )
)
