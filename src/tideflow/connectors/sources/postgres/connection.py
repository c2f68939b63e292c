"""Connections to the source database and the mapping of their failures to Tideflow errors.

libpq reports connection failures as text (psycopg attaches no SQLSTATE to them), so the
classification reads SQLSTATEs when there is one and otherwise libpq's well-known messages.
"""

from __future__ import annotations

import re

import psycopg
from psycopg.conninfo import make_conninfo

from tideflow.connectors.sources.postgres.config import PostgresSourceConfig
from tideflow.errors import TerminalError, TideflowError, TransientError

# Output styles the type converters rely on (see types.py); set per session so a server's own
# defaults (DateStyle=SQL, IntervalStyle=postgres, a local TimeZone) cannot change values.
SESSION_OPTIONS = (
    "-c DateStyle=ISO -c IntervalStyle=iso_8601 -c TimeZone=UTC -c extra_float_digits=3 "
    "-c bytea_output=hex"
)


def conninfo(
    config: PostgresSourceConfig,
    *,
    replication: bool = False,
    connect_timeout: int = 10,
    application_name: str = "tideflow",
) -> str:
    """libpq connection string; ``replication`` opens a logical walsender session."""
    params: dict[str, str | int] = {
        "host": config.hostname,
        "port": config.port,
        "user": config.user,
        "password": config.password,
        "dbname": config.dbname,
        "sslmode": config.sslmode,
        "connect_timeout": connect_timeout,
        "application_name": application_name,
        "client_encoding": "UTF8",
        "options": SESSION_OPTIONS,
        # Detect a silently vanished server (network partition) at the TCP level too.
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    if replication:
        params["replication"] = "database"
    return make_conninfo("", **params)


def connect_sql(config: PostgresSourceConfig, *, connect_timeout: int = 10) -> psycopg.Connection:
    """An autocommit SQL connection (catalog queries, heartbeats); failures are classified."""
    try:
        return psycopg.connect(conninfo(config, connect_timeout=connect_timeout), autocommit=True)
    except psycopg.Error as exc:
        raise classify(config, str(exc), _sqlstate(exc)) from exc


def where(config: PostgresSourceConfig) -> str:
    return f"{config.hostname}:{config.port}"


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(exc, "sqlstate", None) if isinstance(exc, psycopg.Error) else None


_UNREACHABLE = (
    "connection refused",
    "could not translate host name",
    "failed to resolve host",
    "name or service not known",
    "timeout expired",
    "no route to host",
    "network is unreachable",
    "server closed the connection unexpectedly",
    "connection reset",
    "broken pipe",
    "could not receive data",
    "could not send data",
    "ssl syscall error",
    "eof detected",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "terminating connection",
    "consuming input failed",
    "connection is closed",
    "connection is bad",
    "too many clients",
    "remaining connection slots are reserved",
)


def classify(
    config: PostgresSourceConfig, message: str, sqlstate: str | None = None
) -> TideflowError:
    """A :class:`TerminalError` when only a person can fix it, else a :class:`TransientError`."""
    text = message.lower()
    at = where(config)
    detail = _last_line(message)
    if sqlstate == "28P01" or "password authentication failed" in text:
        return TerminalError(
            f"password authentication failed for user '{config.user}' at {at}",
            code="auth_failed",
        )
    if "no pg_hba.conf entry" in text:
        kind = "replication " if "replication connection" in text else ""
        return TerminalError(
            f"{at} refuses {kind}connections from this host for user '{config.user}' "
            f"(no pg_hba.conf entry); add a 'host {'replication' if kind else config.dbname} "
            f"{config.user} <address>/32 scram-sha-256' line to pg_hba.conf and reload",
            code="auth_failed",
        )
    if sqlstate == "3D000" or re.search(r'database ".*" does not exist', text):
        return TerminalError(
            f"database '{config.dbname}' does not exist at {at}", code="database_missing"
        )
    if "must be superuser or replication role" in text or "replication permission" in text:
        return TerminalError(
            f"user '{config.user}' lacks the REPLICATION attribute at {at}: run "
            f"ALTER ROLE {config.user} WITH REPLICATION (on RDS: GRANT rds_replication TO "
            f"{config.user})",
            code="insufficient_privilege",
        )
    if "requires wal_level" in text or "wal_level is insufficient" in text:
        return TerminalError(
            f"logical decoding is off at {at} ({detail}): run ALTER SYSTEM SET wal_level = "
            "logical and restart Postgres (RDS/Aurora: rds.logical_replication=1)",
            code="wal_level",
        )
    if sqlstate == "42501" or "permission denied" in text:
        return TerminalError(
            f"user '{config.user}' lacks a privilege at {at}: {detail}",
            code="insufficient_privilege",
        )
    if "server does not support ssl" in text:
        return TerminalError(
            f"{at} does not support SSL but database.sslmode is '{config.sslmode}'; "
            "enable SSL on the server or set database.sslmode to 'prefer' or 'disable'",
            code="ssl",
        )
    if sqlstate == "55006" or re.search(r"replication slot .* is active", text):
        return TransientError(f"{detail} (another reader holds the slot)", code="slot_in_use")
    if sqlstate in ("57P01", "57P02", "57P03", "53300") or any(s in text for s in _UNREACHABLE):
        return TransientError(f"cannot reach Postgres at {at}: {detail}", code="unreachable")
    return TransientError(f"Postgres error at {at}: {detail}")


def _last_line(message: str) -> str:
    """libpq repeats the failure per attempted address; one line is enough for a person."""
    lines = [ln.strip() for ln in message.strip().splitlines() if ln.strip()]
    line = lines[0] if lines else message
    line = re.sub(r"^connection failed: ", "", line)
    return re.sub(r"^connection to server at .*? failed: (FATAL: +)?", "", line)
