"""Reading table shapes and server facts with ordinary SQL (``information_schema``).

Every connection made here has a connect timeout, so a wrong host never hangs a preflight or
an open, and server errors are mapped to :class:`TransientError`/:class:`TerminalError` by
:func:`connect` (bad credentials and missing privileges are terminal; network trouble is
transient).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import pymysql
import pymysql.cursors

from tideflow.connectors.sources.mysql.config import MySQLSourceConfig
from tideflow.connectors.sources.mysql.types import BinaryMode, kind_of
from tideflow.errors import TerminalError, TransientError
from tideflow.events import Column, TableSchema

# Server error codes that retrying cannot fix.
ACCESS_DENIED = {1044, 1045, 1142, 1143, 1227, 1370, 1698}
UNKNOWN_DATABASE = 1049
BINLOG_FATAL = 1236  # the requested binlog file/position or GTID state is gone

_SYSTEM_DBS = ("mysql", "information_schema", "performance_schema", "sys")
_JSON_CHECK = re.compile(r"json_valid\(`((?:[^`]|``)+)`\)", re.IGNORECASE)


def settings(config: MySQLSourceConfig) -> dict[str, Any]:
    """pymysql connection keywords for this source."""
    return {
        "host": config.hostname,
        "port": config.port,
        "user": config.user,
        "password": config.password,
        "connect_timeout": config.connect_timeout,
        "charset": "utf8mb4",
    }


# What to do when the resume point is gone. Checkpoints belong to pipelines, so new pipelines
# (or a new source) start at the current end of the binlog; the snapshot re-copies the tables.
RESNAPSHOT = (
    "Re-snapshot to recover: recreate this source's pipelines (their checkpoints hold the lost "
    "position; new ones start at the current end of the binlog), then copy the tables again "
    'with POST /sources/snapshot {"source_id": "<this source id>"}.'
)
KEEP_BINLOGS = (
    "To avoid this, keep binlogs longer than a pipeline may be paused or down "
    "(binlog_expire_logs_seconds, or expire_logs_days on MariaDB)."
)


def describe(config: MySQLSourceConfig) -> str:
    return f"{config.user}@{config.hostname}:{config.port}"


def map_error(exc: BaseException, what: str) -> TransientError | TerminalError:
    """Turn a driver error into the error kind the runtime understands."""
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    detail = exc.args[1] if len(exc.args) > 1 else str(exc)
    if code in ACCESS_DENIED:
        return TerminalError(f"{what}: access denied ({code}): {detail}", code="access_denied")
    if code == UNKNOWN_DATABASE:
        return TerminalError(f"{what}: {detail}", code="unknown_database")
    if code == BINLOG_FATAL:
        return TerminalError(
            f"{what}: the server no longer has the binlog needed to resume ({detail}). "
            "The binlog was purged (or the server reset) after the last checkpoint: changes "
            f"in between are lost to this source. {RESNAPSHOT} {KEEP_BINLOGS}",
            code="binlog_purged",
        )
    return TransientError(f"{what}: {detail}", code="source_unavailable")


def connect(config: MySQLSourceConfig) -> pymysql.connections.Connection[Any]:
    try:
        conn = pymysql.connect(**settings(config), autocommit=True)
    except pymysql.err.MySQLError as exc:
        raise map_error(exc, f"cannot connect to {describe(config)}") from None
    zone = config.connection_time_zone.strip()
    # Named zones need the server's time zone tables, often not loaded; UTC never does.
    zone = "+00:00" if zone.upper() in ("UTC", "Z", "GMT", "ETC/UTC") else zone
    try:
        with conn.cursor() as cur:
            cur.execute("SET time_zone = %s", (zone,))
    except pymysql.err.MySQLError as exc:
        conn.close()
        raise TerminalError(
            f"database.connectionTimeZone {config.connection_time_zone!r} is not a time zone "
            f"the server knows ({exc.args[-1]}): use an offset such as +02:00, or load the "
            "server's time zone tables (mysql_tzinfo_to_sql)",
            code="invalid_config",
        ) from None
    return conn


def query(conn: pymysql.connections.Connection[Any], sql: str, args: Any = None) -> list[Any]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def variables(conn: pymysql.connections.Connection[Any], *names: str) -> dict[str, str]:
    rows = query(
        conn,
        "SHOW GLOBAL VARIABLES WHERE Variable_name IN (" + ",".join(["%s"] * len(names)) + ")",
        names,
    )
    return {str(k).lower(): str(v) for k, v in rows}


def is_mariadb(conn: pymysql.connections.Connection[Any]) -> bool:
    return "mariadb" in str(query(conn, "SELECT VERSION()")[0][0]).lower()


def list_tables(
    conn: pymysql.connections.Connection[Any],
    databases: Iterable[str],
    tables: Iterable[tuple[str, str]],
) -> list[tuple[str, str]]:
    """Base tables named by the selection that exist now, sorted."""
    dbs, pairs = list(databases), list(tables)
    rows = query(
        conn,
        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES "
        "WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN %s",
        (_SYSTEM_DBS,),
    )
    want = set(pairs)
    return sorted((str(d), str(t)) for d, t in rows if d in dbs or (d, t) in want)


def load_schemas(
    conn: pymysql.connections.Connection[Any],
    names: Iterable[tuple[str, str]],
    mode: BinaryMode = "bytes",
) -> dict[tuple[str, str], TableSchema]:
    """Current shapes of the named tables (version 1; the caller assigns versions)."""
    wanted = set(names)
    if not wanted:
        return {}
    dbs = tuple(sorted({d for d, _ in wanted}))
    cols: dict[tuple[str, str], list[tuple[str, str, bool]]] = {}
    for db, tbl, name, ctype, nullable in query(
        conn,
        "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE "
        "FROM information_schema.COLUMNS WHERE TABLE_SCHEMA IN %s "
        "ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION",
        (dbs,),
    ):
        if (db, tbl) in wanted:
            cols.setdefault((db, tbl), []).append((name, str(ctype).lower(), nullable == "YES"))
    keys: dict[tuple[str, str], list[str]] = {}
    for db, tbl, name in query(
        conn,
        "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA IN %s AND INDEX_NAME = 'PRIMARY' "
        "ORDER BY TABLE_SCHEMA, TABLE_NAME, SEQ_IN_INDEX",
        (dbs,),
    ):
        keys.setdefault((db, tbl), []).append(name)
    json_cols = _mariadb_json_columns(conn, dbs)
    out: dict[tuple[str, str], TableSchema] = {}
    for tkey, columns in cols.items():
        key = tuple(keys.get(tkey, ()))
        out[tkey] = TableSchema(
            tkey[0],
            tkey[1],
            tuple(
                Column(
                    name,
                    "json" if (*tkey, name) in json_cols else ctype,
                    kind_of("json" if (*tkey, name) in json_cols else ctype, mode),
                    nullable,
                    name in key,
                )
                for name, ctype, nullable in columns
            ),
            key,
        )
    return out


def _mariadb_json_columns(
    conn: pymysql.connections.Connection[Any], dbs: tuple[str, ...]
) -> set[tuple[str, str, str]]:
    """MariaDB's JSON is LONGTEXT with a ``json_valid(col)`` check: find those columns."""
    try:
        rows = query(
            conn,
            "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CHECK_CLAUSE "
            "FROM information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA IN %s",
            (dbs,),
        )
    except pymysql.err.MySQLError:  # MySQL < 8.0.16 has no CHECK_CONSTRAINTS
        return set()
    out: set[tuple[str, str, str]] = set()
    for db, tbl, clause in rows:
        m = _JSON_CHECK.fullmatch(str(clause).strip())
        if m:
            out.add((str(db), str(tbl), m.group(1).replace("``", "`")))
    return out
