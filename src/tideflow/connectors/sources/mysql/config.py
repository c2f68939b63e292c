"""Config model of the ``mysql`` and ``mariadb`` sources (keys as in the Streamkap API).

Both connector codes share this model and one implementation; the server flavour is detected
at connect time (``@@version`` contains ``MariaDB``), so a ``mysql`` source pointed at MariaDB
works too.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import field_validator

from tideflow.connectors.config import ConnectorConfig, setting
from tideflow.connectors.registry import ConnectorSpec, register

# Real replicas conventionally use small ids; a random id far above them keeps two Tideflow
# sources (and a real replica) from clashing, since a second binlog reader with the same id
# makes the server drop the first one.
SERVER_ID_RANGE = (100_000, 2**31 - 1)


def split_list(value: str | None) -> list[str]:
    """Parse a comma-separated include/exclude list, ignoring blanks."""
    return [p.strip() for p in (value or "").split(",") if p.strip()]


class MySQLSourceConfig(ConnectorConfig):
    hostname: str = setting(
        key="database.hostname.user.defined",
        display_name="Hostname",
        description="Host name or IP address of the MySQL/MariaDB server.",
    )
    port: int = setting(
        3306,
        key="database.port.user.defined",
        display_name="Port",
        description="TCP port of the MySQL/MariaDB server.",
    )
    user: str = setting(
        key="database.user",
        display_name="Username",
        description="User with REPLICATION SLAVE, REPLICATION CLIENT (BINLOG MONITOR on "
        "MariaDB) and SELECT on the captured tables.",
    )
    password: str = setting(
        "",
        key="database.password",
        display_name="Password",
        secret=True,
        description="Password of the database user.",
    )
    database_include: str | None = setting(
        None,
        key="database.include.list.user.defined",
        display_name="Databases",
        description="Comma-separated databases to capture (all tables in them).",
    )
    table_include: str | None = setting(
        None,
        key="table.include.list.user.defined",
        display_name="Tables",
        description="Comma-separated database.table names to capture.",
    )
    column_include: str | None = setting(
        None,
        key="column.include.list.user.defined",
        display_name="Included columns",
        description="Comma-separated database.table.column names to keep (others dropped).",
    )
    column_exclude: str | None = setting(
        None,
        key="column.exclude.list.user.defined",
        display_name="Excluded columns",
        description="Comma-separated database.table.column names to drop.",
    )
    connection_time_zone: str = setting(
        "UTC",
        key="database.connectionTimeZone",
        display_name="Connection time zone",
        description="Session time zone of Tideflow's queries (e.g. UTC, +02:00). Binlog "
        "TIMESTAMP values are UTC regardless; DATETIME values are passed through unzoned.",
    )
    snapshot_gtid: Literal["Yes", "No"] = setting(
        "Yes",
        key="snapshot.gtid",
        display_name="Use GTIDs",
        description="Resume by GTID (MariaDB GTIDs, or MySQL with gtid_mode=ON); No resumes "
        "by binlog file and position only.",
    )
    server_id: int | None = setting(
        None,
        key="database.server.id",
        display_name="Replica server id",
        description="Server id the binlog reader registers with; must differ from every "
        "other replica of the server. Default: random in 100000..2147483647.",
    )
    heartbeat_enabled: bool = setting(
        True,
        key="heartbeat.enabled",
        display_name="Heartbeats",
        description="Advance the position while captured tables are quiet.",
    )
    heartbeat_schema: str | None = setting(
        None,
        key="heartbeat.data.collection.schema.or.database",
        display_name="Heartbeat table database",
        description="Database of a tideflow_heartbeat table updated periodically so the "
        "binlog position moves even on an idle server (created when missing).",
    )
    heartbeat_interval_ms: int = setting(
        10_000,
        key="heartbeat.interval.ms",
        display_name="Heartbeat interval (ms)",
        description="How often the heartbeat table is updated.",
    )
    signal_schema: str | None = setting(
        None,
        key="signal.data.collection.schema.or.database",
        display_name="Signal table database",
        description="Database holding the tideflow_signal table used for snapshot watermarks "
        "(created when missing). Default: the first captured database.",
    )
    snapshot_chunk_size: int = setting(
        10_000,
        key="snapshot.chunk.size",
        display_name="Snapshot chunk size",
        description="Rows per snapshot chunk (one bounded query between two watermarks).",
    )
    snapshot_parallelism: int = setting(
        2,
        key="snapshot.parallelism",
        display_name="Snapshot parallelism",
        description="Connections reading snapshot chunks at the same time (per source).",
    )
    binary_handling_mode: Literal["bytes", "base64", "base64-url-safe", "hex"] = setting(
        "bytes",
        key="binary.handling.mode",
        display_name="Binary handling",
        description="How BLOB/BINARY/VARBINARY values are represented in change events.",
    )
    include_db_name: bool = setting(
        False,
        key="include.source.db.name.in.table.name.user.defined",
        display_name="Prefix topics with server name",
        description="Reserved for topic naming; tables are always named database.table.",
    )
    connect_timeout: int = setting(
        10,
        key="database.connect.timeout.seconds",
        display_name="Connect timeout (s)",
        description="Seconds to wait for a connection before giving up.",
    )

    @field_validator("snapshot_chunk_size", "snapshot_parallelism")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be at least 1")
        return value

    def tables(self) -> list[str]:
        return split_list(self.table_include)

    def databases(self) -> list[str]:
        return split_list(self.database_include)

    def effective_server_id(self) -> int:
        return self.server_id if self.server_id is not None else random.randint(*SERVER_ID_RANGE)


for _code, _name in (("mysql", "MySQL"), ("mariadb", "MariaDB")):
    register(
        ConnectorSpec(
            code=_code,
            kind="source",
            display_name=_name,
            config_model=MySQLSourceConfig,
            implementation="tideflow.connectors.sources.mysql.source:MySQLSource",
        )
    )
