"""The upstream objects a source owns: its publication and its logical replication slot.

A publication the source creates carries a comment marker; only such a publication is altered
when the include lists change and dropped with the source. A publication someone else created
is used as it is.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from tideflow.connectors.sources.postgres.position import format_lsn
from tideflow.connectors.sources.postgres.selection import Selection
from tideflow.errors import TerminalError, TransientError

Conn = psycopg.Connection[Any]
MARKER = "created by tideflow"


@dataclass(frozen=True, slots=True)
class SlotInfo:
    plugin: str | None
    database: str | None
    confirmed_flush: int
    wal_status: str | None
    active_pid: int | None


def slot_info(conn: Conn, slot: str) -> SlotInfo | None:
    row = conn.execute(
        "SELECT plugin::text, database::text,"
        " coalesce((confirmed_flush_lsn - '0/0')::int8, 0),"
        " to_jsonb(s) ->> 'wal_status',"  # the column exists from Postgres 13 on
        " active_pid FROM pg_replication_slots s WHERE slot_name = %s",
        (slot,),
    ).fetchone()
    return SlotInfo(*row) if row else None


def create_slot(conn: Conn, slot: str) -> SlotInfo:
    """Create the pgoutput slot; a concurrent creator winning the race is fine."""
    with contextlib.suppress(psycopg.errors.DuplicateObject):
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
    info = slot_info(conn, slot)
    if info is None:
        raise TransientError(f"replication slot '{slot}' vanished right after its creation")
    return info


def check_slot(info: SlotInfo | None, slot: str, dbname: str, start: int | None) -> None:
    """Refuse a slot that cannot deliver every change after ``start`` (invariant 5)."""
    if info is None:
        if start is not None:
            raise TerminalError(
                f"replication slot '{slot}' was dropped; changes after LSN {format_lsn(start)} "
                "may be lost. Re-snapshot the source's tables (a new slot is created when the "
                "source starts without a stored position).",
                code="slot_lost",
            )
        return
    if info.plugin != "pgoutput" or info.database != dbname:
        raise TerminalError(
            f"replication slot '{slot}' exists but belongs to plugin '{info.plugin}' in "
            f"database '{info.database}'; choose another slot.name",
            code="slot_conflict",
        )
    if info.wal_status == "lost":
        raise TerminalError(
            f"replication slot '{slot}' was invalidated by Postgres (its WAL was removed, see "
            "max_slot_wal_keep_size); changes may be lost. Drop the slot and re-snapshot.",
            code="slot_lost",
        )
    if start is not None and info.confirmed_flush > start:
        raise TerminalError(
            f"replication slot '{slot}' has advanced to {format_lsn(info.confirmed_flush)}, "
            f"past this source's checkpoint {format_lsn(start)}; changes in between cannot be "
            "read again. Was the slot shared or advanced by hand? Re-snapshot the source.",
            code="position_gap",
        )


Members = tuple[frozenset[tuple[str, str]], frozenset[str]]  # (tables, schemas)


def _wanted(conn: Conn, selection: Selection) -> Members:
    """What the publication should contain; before Postgres 15, schemas as their tables."""
    if not selection.schemas or conn.info.server_version >= 150000:
        return frozenset(selection.tables), frozenset(selection.schemas)
    rows = conn.execute(
        "SELECT n.nspname::text, c.relname::text FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p') AND NOT c.relispartition",
        (list(selection.schemas),),
    ).fetchall()
    return frozenset(selection.tables) | {(r[0], r[1]) for r in rows}, frozenset()


def _published(conn: Conn, name: str) -> Members:
    tables = conn.execute(
        "SELECT n.nspname::text, c.relname::text FROM pg_publication p"
        " JOIN pg_publication_rel r ON r.prpubid = p.oid JOIN pg_class c ON c.oid = r.prrelid"
        " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE p.pubname = %s",
        (name,),
    ).fetchall()
    schemas: list[tuple[str]] = []
    if conn.info.server_version >= 150000:
        schemas = conn.execute(
            "SELECT n.nspname::text FROM pg_publication p"
            " JOIN pg_publication_namespace pn ON pn.pnpubid = p.oid"
            " JOIN pg_namespace n ON n.oid = pn.pnnspid WHERE p.pubname = %s",
            (name,),
        ).fetchall()
    return frozenset((r[0], r[1]) for r in tables), frozenset(r[0] for r in schemas)


def _targets(members: Members) -> sql.Composable:
    tables, schemas = members
    parts: list[sql.Composable] = []
    if schemas:
        names = sql.SQL(", ").join(map(sql.Identifier, sorted(schemas)))
        parts.append(sql.SQL("TABLES IN SCHEMA {}").format(names))
    if tables:
        names = sql.SQL(", ").join(sql.Identifier(s, t) for s, t in sorted(tables))
        parts.append(sql.SQL("TABLE {}").format(names))
    return sql.SQL(", ").join(parts)


def ensure_publication(conn: Conn, name: str, selection: Selection, dbname: str) -> None:
    """Create the publication, or bring one we created in line with the include lists."""
    if selection.empty:
        raise TerminalError(
            "nothing to capture: set table.include.list.user.defined or schema.include.list",
            code="invalid_config",
        )
    row = conn.execute(
        "SELECT obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = %s",
        (name,),
    ).fetchone()
    pub = sql.Identifier(name)
    try:
        if row is None:
            with conn.transaction():
                # Partition changes under the partitioned table's name (Postgres 13+).
                options = sql.SQL(
                    " WITH (publish_via_partition_root = true)"
                    if conn.info.server_version >= 130000
                    else ""
                )
                conn.execute(
                    sql.SQL("CREATE PUBLICATION {} FOR {}{}").format(
                        pub, _targets(_wanted(conn, selection)), options
                    )
                )
                conn.execute(sql.SQL("COMMENT ON PUBLICATION {} IS {}").format(pub, MARKER))
        elif (row[0] or "").startswith(MARKER):
            wanted = _wanted(conn, selection)
            # Only when the lists changed: ALTER PUBLICATION locks the tables it names.
            if wanted != _published(conn, name):
                conn.execute(sql.SQL("ALTER PUBLICATION {} SET {}").format(pub, _targets(wanted)))
    except psycopg.errors.UndefinedTable as exc:
        raise TerminalError(
            f"cannot publish the configured tables: {exc.diag.message_primary} in database "
            f"'{dbname}'; fix table.include.list.user.defined",
            code="table_missing",
        ) from exc
    except psycopg.errors.UndefinedObject as exc:
        raise TerminalError(
            f"cannot publish the configured schemas: {exc.diag.message_primary}",
            code="schema_missing",
        ) from exc
    except psycopg.errors.InsufficientPrivilege as exc:
        raise TerminalError(
            f"cannot create or alter publication '{name}': {exc.diag.message_primary}. Ask an "
            f"administrator to run CREATE PUBLICATION {name} FOR TABLE <tables> (or make the "
            "user own the tables)",
            code="insufficient_privilege",
        ) from exc


def wait_released(conn: Conn, slot: str, seconds: float) -> SlotInfo | None:
    """Poll until no walsender holds the slot (or it is gone), for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while (info := slot_info(conn, slot)) and info.active_pid is not None:
        if time.monotonic() > deadline:
            return info
        time.sleep(0.05)
    return info


def drop_slot(conn: Conn, slot: str, *, force: bool) -> None:
    """Drop the slot; with ``force`` first end the walsender holding it. Missing is fine.

    A walsender whose client just disconnected (our own ``close``) needs a moment to release
    the slot, so without ``force`` an active slot gets a few seconds before it counts as in
    use.
    """
    info = slot_info(conn, slot) if force else wait_released(conn, slot, 5)
    if info is None:
        return
    if info.active_pid is not None:
        if not force:
            raise TransientError(
                f"replication slot '{slot}' is in use by process {info.active_pid}; stop the "
                "source first or drop it with force",
                code="slot_in_use",
            )
        conn.execute("SELECT pg_terminate_backend(%s)", (info.active_pid,))
        info = wait_released(conn, slot, 10)
        if info is not None and info.active_pid is not None:
            raise TransientError(f"replication slot '{slot}' is still held after 10 s")
    with contextlib.suppress(psycopg.errors.UndefinedObject):
        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


def drop_publication(conn: Conn, name: str) -> bool:
    """Drop the publication if this product created it; return whether it did."""
    row = conn.execute(
        "SELECT obj_description(oid, 'pg_publication') FROM pg_publication WHERE pubname = %s",
        (name,),
    ).fetchone()
    if row is None or not (row[0] or "").startswith(MARKER):
        return False
    conn.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(name)))
    return True
