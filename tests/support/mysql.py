"""Helpers for tests that use the real MariaDB started by `make services` (root, no password)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pymysql

HOST = os.environ.get("TIDEFLOW_TEST_MYSQL_HOST", "127.0.0.1")
PORT = int(os.environ.get("TIDEFLOW_TEST_MYSQL_PORT", "3306"))
USER = "root"
PASSWORD = ""


def connect(**kwargs: Any) -> pymysql.connections.Connection[Any]:
    args: dict[str, Any] = {
        "host": HOST,
        "port": PORT,
        "user": USER,
        "password": PASSWORD,
        "autocommit": True,
        "charset": "utf8mb4",
        "connect_timeout": 5,
    }
    args.update(kwargs)
    return pymysql.connect(**args)


def execute(*statements: str, args: Any = None) -> list[Any]:
    """Run statements on a fresh autocommit connection; return the last result set."""
    return execute_on(PORT, *statements, args=args)


def execute_on(port: int, *statements: str, args: Any = None) -> list[Any]:
    with connect(port=port) as conn, conn.cursor() as cur:
        rows: list[Any] = []
        for sql in statements:
            cur.execute(sql, args)
            rows = list(cur.fetchall())
        return rows


@contextmanager
def temp_database(prefix: str = "tf") -> Iterator[str]:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    execute(f"CREATE DATABASE `{name}`")
    try:
        yield name
    finally:
        execute(f"DROP DATABASE IF EXISTS `{name}`")


def source_config(**keys: Any) -> dict[str, Any]:
    """A mysql source config map for the test server; ``keys`` are dotted overrides."""
    base: dict[str, Any] = {
        "database.hostname.user.defined": HOST,
        "database.port.user.defined": PORT,
        "database.user": USER,
        "database.password": PASSWORD,
    }
    base.update(keys)
    return base


def destination_config(database: str, **keys: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "database.hostname.user.defined": HOST,
        "database.port.user.defined": PORT,
        "database.database.user.defined": database,
        "connection.username": USER,
        "connection.password": PASSWORD,
    }
    base.update(keys)
    return base


def table_checksum(db: str, table: str, columns: str, order_by: str = "1") -> tuple[int, str]:
    """(row count, md5 of all rows in key order) — compare source and destination contents."""
    rows = execute(
        "SET SESSION group_concat_max_len = 1073741824",
        f"SELECT COUNT(*), COALESCE(MD5(GROUP_CONCAT(CONCAT_WS('|', {columns}) "
        f"ORDER BY {order_by} SEPARATOR '\\n')), '') FROM `{db}`.`{table}`",
    )
    return int(rows[0][0]), str(rows[0][1])


@contextmanager
def scratch_server(*options: str, port: int = 3317) -> Iterator[int]:
    """A throw-away mariadbd on another loopback port (own temp datadir), e.g. without binlog.

    Root over TCP has an empty password. The server is stopped and its files removed on exit.
    """
    import shutil
    import signal
    import subprocess
    import tempfile
    import time
    from pathlib import Path

    base = Path(tempfile.mkdtemp(prefix="tf-mariadb-"))
    shutil.chown(base, "mysql", "mysql")
    data = base / "data"
    subprocess.run(
        [
            "mariadb-install-db",
            "--no-defaults",
            f"--datadir={data}",
            "--user=mysql",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    proc = subprocess.Popen(
        [
            "mariadbd",
            "--no-defaults",
            f"--datadir={data}",
            "--user=mysql",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--socket={base}/sock",
            f"--pid-file={base}/pid",
            "--innodb-buffer-pool-size=16M",
            *options,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                connect(port=port).close()
                break
            except pymysql.err.MySQLError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("scratch mariadbd did not start") from None
                time.sleep(0.2)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)
