"""Heartbeat writes into the captured database.

When the captured database is idle but others on the same server write WAL, the slot can only
advance if our walsender has something of ours to confirm. A heartbeat writes a little WAL in
the captured database: a transactional logical message (the default; it comes back as a
heartbeat :class:`~tideflow.events.Commit`), or an upsert into ``<schema>.tideflow_heartbeat``
for setups that prefer a table. Either way the next keepalive or commit carries a position the
runtime can acknowledge (invariant 4).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from tideflow.connectors.sources.postgres.config import PostgresSourceConfig
from tideflow.connectors.sources.postgres.decoder import HEARTBEAT_PREFIX

TABLE = "tideflow_heartbeat"


class Heartbeat:
    """Decides when a heartbeat is due and writes it on the source's SQL connection."""

    def __init__(self, config: PostgresSourceConfig) -> None:
        self.enabled = config.heartbeat_enabled
        self.interval = max(config.heartbeat_interval_ms, 100) / 1000
        self._schema = None if config.heartbeat_logical_message else config.heartbeat_schema
        self._last = 0.0
        self._table_ready = False

    def due(self, now: float, last_traffic: float) -> bool:
        """Due after ``interval`` without traffic and without a heartbeat."""
        return (
            self.enabled
            and now - last_traffic >= self.interval
            and now - self._last >= self.interval
        )

    def write(self, conn: psycopg.Connection[Any], now: float) -> None:
        self._last = now
        if self._schema is None:
            conn.execute("SELECT pg_logical_emit_message(true, %s, '')", (HEARTBEAT_PREFIX,))
            return
        table = sql.Identifier(self._schema, TABLE)
        if not self._table_ready:
            self.create_table(conn)
        conn.execute(
            sql.SQL(
                "INSERT INTO {} (id, ts) VALUES (1, now())"
                " ON CONFLICT (id) DO UPDATE SET ts = excluded.ts"
            ).format(table)
        )

    def create_table(self, conn: psycopg.Connection[Any]) -> None:
        """Create the heartbeat table when the table mode is configured and it is missing."""
        if self._schema is None or not self.enabled:
            return
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (id int PRIMARY KEY, ts timestamptz NOT NULL)"
            ).format(sql.Identifier(self._schema, TABLE))
        )
        self._table_ready = True
