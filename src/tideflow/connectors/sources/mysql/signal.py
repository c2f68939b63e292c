"""The signal table ``<database>.tideflow_signal``: how snapshot watermarks reach the binlog.

MySQL has no logical messages, so a watermark is a row inserted into the signal table: the
binlog reader (:class:`~.source.MySQLSource`) turns inserts into it into
:class:`~tideflow.events.Message` records and never emits them as data. The table has
Debezium's signalling layout (``id``, ``type``, ``data``), so a table created for Debezium
works too. Each mark is inserted and deleted again in one transaction: the binlog keeps the
insert, the table stays empty.

The database is ``signal.data.collection.schema.or.database``, else the first captured
database (the first of ``database.include.list.user.defined``, or of the databases of
``table.include.list.user.defined``).
"""

from __future__ import annotations

from typing import Any

import pymysql

from tideflow.connectors.sources.mysql import catalog
from tideflow.connectors.sources.mysql.config import MySQLSourceConfig
from tideflow.engine.snapshot import watermark
from tideflow.engine.snapshot.reader import SnapshotError

TABLE = watermark.SIGNAL_TABLE

_DDL = (
    "CREATE TABLE IF NOT EXISTS {t} (id VARCHAR(42) NOT NULL PRIMARY KEY, "
    "type VARCHAR(32) NOT NULL, data VARCHAR(2048) NULL) ENGINE=InnoDB"
)


def database(config: MySQLSourceConfig) -> str | None:
    """The database of the signal table (None: the source names no database at all)."""
    if config.signal_schema:
        return config.signal_schema
    for db in config.databases():
        return db
    for name in config.tables():
        db, sep, _ = name.partition(".")
        if sep and db:
            return db
    return None


def _name(db: str) -> str:
    return f"`{db.replace('`', '``')}`.`{TABLE}`"


def ensure(conn: pymysql.connections.Connection[Any], config: MySQLSourceConfig) -> str:
    """Create the signal table when missing and check that marks can be written to it.

    Returns its ``database.table`` name; raises :class:`SnapshotError` saying what to grant.
    The write check inserts and deletes a row in a transaction that is rolled back, so it
    leaves nothing in the binlog.
    """
    db = database(config)
    if db is None:
        raise SnapshotError(
            "snapshots need a signal table: set signal.data.collection.schema.or.database"
        )
    name, who = f"{db}.{TABLE}", catalog.describe(config)
    exists = catalog.query(
        conn,
        "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
        (db, TABLE),
    )
    if not exists:
        try:
            catalog.query(conn, _DDL.format(t=_name(db)))
        except pymysql.err.MySQLError as exc:
            raise SnapshotError(
                f"the snapshot signal table {name} does not exist and {who} cannot create it "
                f"({exc.args[-1]}): create it with {_DDL.format(t=_name(db))} and GRANT "
                f"INSERT, DELETE ON {name} to the source's user"
            ) from exc
    try:
        conn.begin()
        catalog.query(
            conn,
            f"INSERT INTO {_name(db)} (id, type, data) VALUES (%s, %s, NULL)",
            ("tideflow-probe", "probe"),
        )
        catalog.query(conn, f"DELETE FROM {_name(db)} WHERE id = %s", ("tideflow-probe",))
    except pymysql.err.MySQLError as exc:
        raise SnapshotError(
            f"{who} cannot write the snapshot signal table {name} ({exc.args[-1]}): GRANT "
            f"INSERT, DELETE ON {name} to the source's user"
        ) from exc
    finally:
        conn.rollback()
    return name


def write(conn: pymysql.connections.Connection[Any], db: str, body: str) -> None:
    """Write one mark: insert and delete its row in one committed transaction."""
    row_id, kind, data = watermark.signal_row(body)
    table = _name(db)
    conn.begin()
    try:
        catalog.query(
            conn, f"INSERT INTO {table} (id, type, data) VALUES (%s, %s, %s)", (row_id, kind, data)
        )
        catalog.query(conn, f"DELETE FROM {table} WHERE id = %s", (row_id,))
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
