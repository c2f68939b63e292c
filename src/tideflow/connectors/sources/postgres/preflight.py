"""Preflight checks of a ``postgresql`` source: everything a start needs, told plainly.

Runs with a 5 s connect timeout and a statement timeout, so an unreachable or stuck server
costs seconds, not a hang. Fatal problems refuse a start; warnings (keyless tables) do not.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import pq

from tideflow.connectors.base import Problem
from tideflow.connectors.sources.postgres import catalog, connection
from tideflow.connectors.sources.postgres.config import PostgresSourceConfig
from tideflow.connectors.sources.postgres.decoder import keyless_message
from tideflow.connectors.sources.postgres.selection import Selection
from tideflow.errors import TideflowError

CONNECT_TIMEOUT = 5


def _check_of(error: TideflowError) -> str:
    return {
        "auth_failed": "authentication",
        "database_missing": "database",
        "insufficient_privilege": "privileges",
        "ssl": "ssl",
    }.get(error.code, "connectivity")


def run(config: PostgresSourceConfig) -> list[Problem]:
    try:
        conn = connection.connect_sql(config, connect_timeout=CONNECT_TIMEOUT)
    except TideflowError as exc:
        return [Problem(_check_of(exc), exc.message)]
    with conn:
        conn.execute("SET statement_timeout = '10s'")
        problems = _server(conn, config)
        problems += _tables(conn, config)
    if not any(p.fatal for p in problems):
        problems += _replication_connection(config)
    return problems


def _server(conn: psycopg.Connection[Any], config: PostgresSourceConfig) -> list[Problem]:
    problems: list[Problem] = []
    at = connection.where(config)
    row = conn.execute(
        "SELECT current_setting('wal_level'), r.rolsuper, r.rolreplication,"
        " EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rds_replication'"
        "         AND pg_has_role(r.oid, oid, 'MEMBER')),"
        " current_setting('max_replication_slots')::int,"
        " (SELECT count(*) FROM pg_replication_slots),"
        " EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)"
        " FROM pg_roles r WHERE r.rolname = current_user",
        (config.slot_name,),
    ).fetchone()
    assert row is not None  # current_user always has a pg_roles row
    wal_level, superuser, replication, rds, max_slots, used_slots, slot_exists = row
    if wal_level != "logical":
        problems.append(
            Problem(
                "wal_level",
                f"wal_level is '{wal_level}' at {at}; logical replication needs "
                "wal_level=logical: run ALTER SYSTEM SET wal_level = logical and restart "
                "Postgres (RDS/Aurora: set rds.logical_replication=1 in the parameter group; "
                "Cloud SQL: set the cloudsql.logical_decoding flag)",
            )
        )
    if not (superuser or replication or rds):
        problems.append(
            Problem(
                "replication_privilege",
                f"user '{config.user}' has no REPLICATION attribute at {at}: run ALTER ROLE "
                f"{config.user} WITH REPLICATION (RDS: GRANT rds_replication TO {config.user})",
            )
        )
    if not slot_exists and used_slots >= max_slots:
        problems.append(
            Problem(
                "replication_slots",
                f"all {max_slots} replication slots at {at} are in use; raise "
                "max_replication_slots or drop an unused slot",
            )
        )
    return problems


def _tables(conn: psycopg.Connection[Any], config: PostgresSourceConfig) -> list[Problem]:
    selection = Selection.of(config)
    if selection.empty:
        return [
            Problem(
                "tables",
                "nothing to capture: set table.include.list.user.defined or schema.include.list",
            )
        ]
    problems: list[Problem] = []
    for schema in selection.schemas:
        row = conn.execute(
            "SELECT has_schema_privilege(oid, 'USAGE') FROM pg_namespace WHERE nspname = %s",
            (schema,),
        ).fetchone()
        if row is None:
            problems.append(
                Problem("tables", f"schema {schema} does not exist in database {config.dbname}")
            )
        elif not row[0]:
            problems.append(
                Problem(
                    "table_privilege",
                    f"user '{config.user}' has no USAGE on schema {schema}: run GRANT USAGE ON "
                    f"SCHEMA {schema} TO {config.user}",
                )
            )
    tables = list(selection.tables)
    existing = catalog.captured_tables(conn, Selection((), selection.schemas))
    tables += [(n.split(".", 1)[0], n.split(".", 1)[1]) for n in existing]
    pub_exists = conn.execute(
        "SELECT 1 FROM pg_publication WHERE pubname = %s", (config.publication_name,)
    ).fetchone()
    states = catalog.table_states(conn, tables)
    for t in states:
        if t.oid is None:
            problems.append(
                Problem("tables", f"table {t.name} does not exist in database {config.dbname}")
            )
            continue
        if not t.can_select:
            problems.append(
                Problem(
                    "table_privilege",
                    f"user '{config.user}' cannot SELECT from {t.name}: run GRANT SELECT ON "
                    f"{t.name} TO {config.user}",
                )
            )
        if not t.has_primary_key and t.identity in ("d", "n"):
            problems.append(
                Problem("replica_identity", keyless_message(t.name, t.identity), fatal=False)
            )
    if not pub_exists and not _is_superuser(conn):
        problems += _publication(
            config, selection, [t.name for t in states if t.oid and not t.owned]
        )
    return problems


def _publication(
    config: PostgresSourceConfig, selection: Selection, not_owned: list[str]
) -> list[Problem]:
    """Creating a publication needs table ownership, and superuser for whole schemas."""
    reason = ""
    if selection.schemas:
        reason = "publishing whole schemas needs a superuser"
    elif not_owned:
        reason = f"user '{config.user}' does not own {', '.join(not_owned)}"
    if not reason:
        return []
    return [
        Problem(
            "publication",
            f"publication {config.publication_name} does not exist and cannot be created: "
            f"{reason}. Ask an administrator to run CREATE PUBLICATION "
            f"{config.publication_name} FOR TABLE <the captured tables>",
        )
    ]


def _is_superuser(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    return bool(row and row[0])


def _replication_connection(config: PostgresSourceConfig) -> list[Problem]:
    """pg_hba.conf has separate rules for replication connections: try one."""
    info = connection.conninfo(config, replication=True, connect_timeout=CONNECT_TIMEOUT)
    conn = pq.PGconn.connect(info.encode())
    try:
        if conn.status != pq.ConnStatus.OK:
            error = connection.classify(config, conn.get_error_message())
            return [Problem("replication_connection", error.message)]
        result = conn.exec_(b"IDENTIFY_SYSTEM")
        if result.status != pq.ExecStatus.TUPLES_OK:
            error = connection.classify(config, result.get_error_message())
            return [Problem("replication_connection", error.message)]
        return []
    finally:
        conn.finish()
