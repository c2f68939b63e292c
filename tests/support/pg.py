"""Helpers for tests that use the real Postgres started by `make services`."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

HOST = os.environ.get("TIDEFLOW_TEST_PG_HOST", "127.0.0.1")
PORT = int(os.environ.get("TIDEFLOW_TEST_PG_PORT", "5432"))
USER = "postgres"
PASSWORD = "postgres"


def dsn(dbname: str = "postgres", port: int | None = None) -> str:
    return f"host={HOST} port={port or PORT} user={USER} password={PASSWORD} dbname={dbname}"


def url(dbname: str) -> str:
    return f"postgresql://{USER}:{PASSWORD}@{HOST}:{PORT}/{dbname}"


def create_database(prefix: str = "tf") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str, timeout: float = 30.0) -> None:
    """Drop a test database and its replication slots, even while a walsender still holds
    one (a server under test may reconnect until it is stopped)."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn(), autocommit=True) as conn:
        while True:
            slots = [
                r[0]
                for r in conn.execute(
                    "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,)
                ).fetchall()
            ]
            try:
                for slot in slots:
                    conn.execute(
                        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                        "WHERE slot_name = %s AND active_pid IS NOT NULL",
                        (slot,),
                    )
                    conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                return
            except (psycopg.errors.ObjectInUse, psycopg.errors.UndefinedObject):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


@contextmanager
def temp_database(prefix: str = "tf") -> Iterator[str]:
    name = create_database(prefix)
    try:
        yield name
    finally:
        drop_database(name)


def table_checksum(
    dbname: str, table: str, columns: str = "*", order_by: str = "1", port: int | None = None
) -> tuple[int, str]:
    """(row count, md5 of all rows in key order) — compare source and destination contents."""
    with psycopg.connect(dsn(dbname, port)) as conn:
        row = conn.execute(
            # The alias must not be a column name: a column `t` would shadow the whole-row
            # reference and only that column would be compared.
            f"SELECT count(*), coalesce(md5(string_agg(tf_row_::text, '|' ORDER BY {order_by}))"
            f", '') FROM (SELECT {columns} FROM {table}) tf_row_"
        ).fetchone()
        assert row is not None
        return int(row[0]), str(row[1])
