"""Read-only catalog queries of the source database (autocommit connection, short queries).

Called when a Relation message arrives (types, primary key, NOT NULLs), when resolving the
captured tables, and by preflight. The Relation message stays the truth about the columns in
the WAL; the catalog only adds what pgoutput does not send.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from tideflow.connectors.sources.postgres.decoder import TableFacts
from tideflow.connectors.sources.postgres.selection import Selection
from tideflow.connectors.sources.postgres.types import PgType

Conn = psycopg.Connection[Any]


def pg_types(conn: Conn, oids: Collection[int]) -> dict[int, PgType]:
    rows = conn.execute(
        "SELECT oid::int8, typname::text, typtype::text, typcategory::text, typbasetype::int8,"
        " typelem::int8, typdelim::text FROM pg_type WHERE oid = ANY(%s::oid[])",
        (list(oids),),
    ).fetchall()
    return {r[0]: PgType(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows}


def table_facts(conn: Conn, relid: int) -> TableFacts:
    row = conn.execute(
        """
        SELECT
          coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
                    FROM pg_index i
                    CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                    WHERE i.indrelid = %(r)s AND i.indisprimary), '{}'),
          coalesce((SELECT array_agg(attname::text) FROM pg_attribute
                    WHERE attrelid = %(r)s AND attnum > 0 AND NOT attisdropped
                      AND attnotnull), '{}')
        """,
        {"r": relid},
    ).fetchone()
    if row is None:
        return TableFacts()
    return TableFacts(tuple(row[0]), frozenset(row[1]))


def captured_tables(conn: Conn, selection: Selection) -> list[str]:
    """``schema.table`` of every table the selection covers, schemas expanded, sorted.

    Partitions are left out: the publication reports their changes under the partitioned
    table (``publish_via_partition_root``).
    """
    names = {f"{s}.{t}" for s, t in selection.tables}
    if selection.schemas:
        rows = conn.execute(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p') AND NOT c.relispartition",
            (list(selection.schemas),),
        ).fetchall()
        names.update(f"{s}.{t}" for s, t in rows)
    return sorted(names)


@dataclass(frozen=True, slots=True)
class TableState:
    """Preflight facts about one configured table (``oid`` None = it does not exist)."""

    schema: str
    table: str
    oid: int | None
    can_select: bool = False
    has_primary_key: bool = False
    identity: str = "d"
    owned: bool = False

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"


def table_states(conn: Conn, tables: Iterable[tuple[str, str]]) -> list[TableState]:
    out = []
    for schema, table in tables:
        row = conn.execute(
            """
            SELECT c.oid::int8, has_table_privilege(c.oid, 'SELECT'),
                   EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary),
                   c.relreplident::text, pg_has_role(c.relowner, 'USAGE')
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
            """,
            (schema, table),
        ).fetchone()
        if row is None:
            out.append(TableState(schema, table, None))
        else:
            out.append(TableState(schema, table, row[0], row[1], row[2], row[3], row[4]))
    return out
