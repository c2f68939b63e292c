"""Snapshot watermarks as rows of a signal table ``<schema>.tideflow_signal`` (optional).

By default Postgres watermarks are logical messages (``pg_logical_emit_message``, no table).
When ``signal.data.collection.schema.or.database`` names a schema and
``snapshot.read.only.user.defined`` is ``No``, they are rows of ``<schema>.tideflow_signal``
instead (Debezium's ``id``, ``type``, ``data`` layout, see
:mod:`tideflow.engine.snapshot.watermark`): the source creates the table when missing, adds it
to its publication, and turns its inserts into watermark messages — its changes never reach
destinations. Each mark is inserted and deleted in one transaction, so the table stays empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import psycopg
from psycopg import sql

from tideflow.connectors.sources.postgres.config import PostgresSourceConfig
from tideflow.connectors.sources.postgres.selection import Selection
from tideflow.connectors.sources.postgres.snapshot import PostgresChunkReader
from tideflow.engine.snapshot import watermark
from tideflow.engine.snapshot.reader import SnapshotError, TablePlan
from tideflow.errors import TerminalError
from tideflow.events import ChangeEvent, Message, Op, Record

TABLE = watermark.SIGNAL_TABLE

_DDL = (
    "CREATE TABLE IF NOT EXISTS {} (id varchar(42) PRIMARY KEY, type varchar(32) NOT NULL, "
    "data varchar(2048))"
)


def table_of(config: PostgresSourceConfig) -> tuple[str, str] | None:
    """``(schema, table)`` of the signal table when watermarks go through it, else None."""
    if config.signal_schema and config.snapshot_read_only == "No":
        return config.signal_schema, TABLE
    return None


def create(conn: psycopg.Connection[Any], table: tuple[str, str]) -> None:
    """Create the signal table when missing (a source opening with it configured)."""
    try:
        conn.execute(sql.SQL(_DDL).format(sql.Identifier(*table)))
    except psycopg.Error as exc:
        raise TerminalError(
            f"cannot create the snapshot signal table {table[0]}.{table[1]}: "
            f"{exc.diag.message_primary}. Create it ({_DDL.format(f'{table[0]}.{table[1]}')}) "
            "and GRANT INSERT, DELETE on it to the source's user, or set "
            "snapshot.read.only.user.defined=Yes to use logical messages",
            code="signal_table",
        ) from exc


def publish(selection: Selection, table: tuple[str, str]) -> Selection:
    """The selection with the signal table added (its inserts must reach the slot)."""
    if table[0] in selection.schemas or table in selection.tables:
        return selection
    return Selection((*selection.tables, table), selection.schemas)


def as_messages(records: Sequence[Record], name: str) -> list[Record]:
    """Inserts into the signal table (``schema.table`` ``name``) become messages for the
    snapshot engine; its other changes (the deletes that keep it empty) are dropped."""
    out: list[Record] = []
    for r in records:
        if r.__class__ is ChangeEvent:
            assert isinstance(r, ChangeEvent)
            if r.table.name == name:
                if r.op is Op.CREATE and r.after is not None:
                    body = orjson.dumps(r.after, default=str)
                    out.append(Message(watermark.SIGNAL_PREFIX, body, r.position, True))
                continue
        out.append(r)
    return out


class SignalTableChunkReader(PostgresChunkReader):
    """A Postgres chunk reader whose watermarks are signal-table rows."""

    def __init__(self, config: PostgresSourceConfig, table: tuple[str, str]) -> None:
        super().__init__(config)
        self._signal = sql.Identifier(*table)
        self._signal_name = f"{table[0]}.{table[1]}"
        self._signal_checked = False

    def plan(self, table: str, surrogate_key: str | None) -> TablePlan:
        if table == self._signal_name:
            raise SnapshotError(f"{table} is the snapshot signal table, not a data table")
        if not self._signal_checked:
            self._check_signal()
            self._signal_checked = True
        return super().plan(table, surrogate_key)

    def _check_signal(self) -> None:
        """Insert and delete a row in a transaction rolled back: decoding never sees it."""
        conn = self._conn
        try:
            with conn.transaction(force_rollback=True):
                conn.execute(
                    sql.SQL("INSERT INTO {} (id, type) VALUES ('tideflow-probe', 'probe')").format(
                        self._signal
                    )
                )
                conn.execute(
                    sql.SQL("DELETE FROM {} WHERE id = 'tideflow-probe'").format(self._signal)
                )
        except psycopg.Error as exc:
            raise SnapshotError(
                f"cannot write the snapshot signal table {self._signal_name} "
                f"({exc.diag.message_primary}): GRANT INSERT, DELETE ON {self._signal_name} to "
                "the source's user"
            ) from exc

    def watermark(self, body: str) -> None:
        row_id, kind, data = watermark.signal_row(body)
        conn = self._conn
        with conn.transaction():
            conn.execute(
                sql.SQL("INSERT INTO {} (id, type, data) VALUES (%s, %s, %s)").format(self._signal),
                (row_id, kind, data),
            )
            conn.execute(sql.SQL("DELETE FROM {} WHERE id = %s").format(self._signal), (row_id,))
