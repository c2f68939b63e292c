"""Checks that a ``mysql``/``mariadb`` source can run, with messages a person can act on.

Every check runs on one short-lived connection with a connect timeout, so an unreachable host
yields a problem within ``database.connect.timeout.seconds`` instead of a hang.
"""

from __future__ import annotations

import re
from typing import Any, TypeAlias

import pymysql

from tideflow.connectors.base import Problem
from tideflow.connectors.sources.mysql import catalog
from tideflow.connectors.sources.mysql.config import MySQLSourceConfig
from tideflow.connectors.sources.mysql.selection import Selection
from tideflow.errors import TideflowError

Conn: TypeAlias = "pymysql.connections.Connection[Any]"


def run(config: MySQLSourceConfig, server_id: int) -> list[Problem]:
    try:
        selection = Selection.of(config)
    except TideflowError as exc:
        return [Problem("config", exc.message)]
    try:
        conn = catalog.connect(config)
    except TideflowError as exc:
        hint = {
            "access_denied": " Check database.user and database.password.",
            "invalid_config": "",
        }.get(
            exc.code,
            " Check database.hostname.user.defined and database.port.user.defined, and "
            "that the server accepts connections from Tideflow.",
        )
        return [Problem("connectivity", exc.message + hint)]
    try:
        problems = _binlog(conn, config)
        problems += _privileges(conn, catalog.is_mariadb(conn))
        problems += _server_id(conn, server_id)
        problems += _tables(conn, selection)
        return problems
    except pymysql.err.MySQLError as exc:
        return [Problem("connectivity", f"preflight query failed: {exc.args[-1]}")]
    finally:
        conn.close()


def _binlog(conn: Conn, config: MySQLSourceConfig) -> list[Problem]:
    v = catalog.variables(
        conn, "log_bin", "binlog_format", "binlog_row_image", "binlog_row_metadata", "gtid_mode"
    )
    out: list[Problem] = []
    if v.get("log_bin", "OFF").upper() not in ("ON", "1"):
        out.append(
            Problem(
                "binlog",
                "the binary log is disabled (log_bin=OFF): start the server with log_bin "
                "(e.g. log_bin=mysql-bin in my.cnf) and a server_id, then restart it",
            )
        )
    fmt = v.get("binlog_format", "").upper()
    if fmt != "ROW":
        out.append(
            Problem(
                "binlog",
                f"binlog_format is {fmt or 'unknown'}; change capture needs ROW: "
                "SET GLOBAL binlog_format=ROW (and binlog_format=ROW in my.cnf)",
            )
        )
    image = v.get("binlog_row_image", "").upper()
    if image and image != "FULL":
        out.append(
            Problem(
                "binlog",
                f"binlog_row_image is {image}; updates and deletes need full row images: "
                "SET GLOBAL binlog_row_image=FULL (and in my.cnf)",
            )
        )
    meta = v.get("binlog_row_metadata", "").upper()
    if meta and meta != "FULL":
        out.append(
            Problem(
                "binlog",
                f"binlog_row_metadata is {meta}: column names are taken from Tideflow's schema "
                "history instead of the binlog; SET GLOBAL binlog_row_metadata=FULL is more robust",
                fatal=False,
            )
        )
    if config.snapshot_gtid == "Yes" and "gtid_mode" in v and v["gtid_mode"].upper() != "ON":
        out.append(
            Problem(
                "gtid",
                f"gtid_mode is {v['gtid_mode']}: positions will be binlog file/offset only "
                "(set snapshot.gtid=No to silence this)",
                fatal=False,
            )
        )
    return out


_GRANT = re.compile(r"^GRANT (.+?) ON (\S+) TO", re.IGNORECASE)


def _privileges(conn: Conn, mariadb: bool) -> list[Problem]:
    granted: set[str] = set()
    for (line,) in catalog.query(conn, "SHOW GRANTS"):
        m = _GRANT.match(str(line))
        if m and m.group(2).replace("`", "") in ("*.*",):
            granted |= {p.strip().upper() for p in m.group(1).split(",")}
    if "ALL PRIVILEGES" in granted:
        return []
    out: list[Problem] = []
    if not granted & {"REPLICATION SLAVE", "REPLICATION REPLICA"}:
        out.append(
            Problem(
                "privileges",
                "the user lacks REPLICATION SLAVE, needed to read the binlog: "
                "GRANT REPLICATION SLAVE ON *.* TO <user>",
            )
        )
    monitor = {"REPLICATION CLIENT", "BINLOG MONITOR", "SUPER", "REPLICATION SLAVE ADMIN"}
    if not granted & monitor:
        need = "BINLOG MONITOR" if mariadb else "REPLICATION CLIENT"
        out.append(
            Problem(
                "privileges",
                f"the user lacks {need}, needed to read binlog positions: "
                f"GRANT {need} ON *.* TO <user>",
            )
        )
    return out


def _server_id(conn: Conn, server_id: int) -> list[Problem]:
    own = catalog.query(conn, "SELECT @@server_id")[0][0]
    if int(own) == server_id:
        return [
            Problem(
                "server_id",
                f"database.server.id {server_id} equals the server's own server_id; choose another",
            )
        ]
    try:
        hosts = catalog.query(conn, "SHOW SLAVE HOSTS")
    except pymysql.err.MySQLError:  # needs REPLICATION MASTER ADMIN on MariaDB; reported above
        return []
    for row in hosts:
        if int(row[0]) == server_id:
            return [
                Problem(
                    "server_id",
                    f"another replica ({row[1] or 'unnamed'}) is connected with server id "
                    f"{server_id}; two readers with one id disconnect each other: set "
                    "database.server.id to an unused value",
                )
            ]
    return []


def _tables(conn: Conn, selection: Selection) -> list[Problem]:
    if selection.empty:
        return [
            Problem(
                "tables",
                "nothing to capture: set database.include.list.user.defined or "
                "table.include.list.user.defined",
            )
        ]
    out: list[Problem] = []
    found = catalog.list_tables(conn, selection.databases, selection.tables)
    for db, table in sorted(selection.tables - set(found)):
        out.append(Problem("tables", f"table {db}.{table} does not exist (or is not visible)"))
    for db in sorted(selection.databases):
        if not any(d == db for d, _ in found):
            out.append(Problem("tables", f"database {db} has no tables yet", fatal=False))
    schemas = catalog.load_schemas(conn, found)
    for db, table in found:
        try:
            catalog.query(conn, f"SELECT 1 FROM `{_q(db)}`.`{_q(table)}` LIMIT 0")
        except pymysql.err.MySQLError as exc:
            out.append(
                Problem(
                    "privileges",
                    f"cannot read {db}.{table} ({exc.args[-1]}): GRANT SELECT ON {db}.* TO <user>",
                )
            )
            continue
        schema = schemas.get((db, table))
        if schema is not None and not schema.key:
            out.append(
                Problem(
                    "keyless",
                    f"table {db}.{table} has no primary key: destinations cannot apply its updates "
                    "and deletes by key (rows are appended); add a primary key",
                    fatal=False,
                )
            )
    return out


def _q(name: str) -> str:
    return name.replace("`", "``")
