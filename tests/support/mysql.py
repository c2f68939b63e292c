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


# A binlog like the shared server's (scripts/services/mariadb.sh): what the mariadb source needs.
BINLOG_OPTIONS = (
    "--log-bin=mariadb-bin",
    "--server-id=1",
    "--binlog-format=ROW",
    "--binlog-row-image=FULL",
    "--binlog-row-metadata=FULL",
    "--gtid-strict-mode=ON",
)


class ScratchServer:
    """A throw-away mariadbd on another loopback port with its own temp datadir.

    Root over TCP has an empty password. :meth:`restart` keeps the datadir (and binlogs), so a
    test can restart "the source database" without disturbing the shared server other tests use.
    """

    def __init__(self, *options: str, port: int) -> None:
        import shutil
        import subprocess
        import tempfile
        from pathlib import Path

        self.options = options
        self.port = port
        self.base = Path(tempfile.mkdtemp(prefix="tf-mariadb-"))
        shutil.chown(self.base, "mysql", "mysql")
        self.data = self.base / "data"
        # Private temp files: concurrent installs in one /tmp clash on temp table names.
        self.tmp = self.base / "tmp"
        self.tmp.mkdir()
        shutil.chown(self.tmp, "mysql", "mysql")
        self.proc: subprocess.Popen[bytes] | None = None
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.data}",
                "--user=mysql",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                f"--tmpdir={self.tmp}",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self, timeout: float = 60) -> None:
        import subprocess
        import time

        self.proc = proc = subprocess.Popen(
            [
                "mariadbd",
                "--no-defaults",
                f"--datadir={self.data}",
                "--user=mysql",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.base}/sock",
                f"--pid-file={self.base}/pid",
                f"--tmpdir={self.tmp}",
                f"--log-error={self.base}/error.log",
                "--innodb-buffer-pool-size=16M",
                *self.options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while True:
            try:
                connect(port=self.port).close()
                return
            except pymysql.err.MySQLError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.base / "error.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"scratch mariadbd did not start: {log}") from None
                time.sleep(0.2)

    def stop(self, timeout: float = 60) -> None:
        """A clean shutdown (SIGTERM), like ``mariadb-admin shutdown``."""
        import signal
        import subprocess

        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        import shutil

        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


@contextmanager
def scratch_server(*options: str, port: int = 3317) -> Iterator[int]:
    """A running :class:`ScratchServer` (e.g. without binlog); yields its port."""
    with scratch(*options, port=port) as server:
        yield server.port


@contextmanager
def scratch(*options: str, port: int = 3317) -> Iterator[ScratchServer]:
    """A running :class:`ScratchServer`, stopped and its files removed on exit."""
    server = ScratchServer(*options, port=port)
    try:
        server.start()
        yield server
    finally:
        server.remove()
