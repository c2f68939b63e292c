"""Destination tables: creation, schema evolution and the column catalogue.

DDL runs in its own short transaction before a batch's data transaction: ``CREATE ... IF NOT
EXISTS`` and ``ADD COLUMN IF NOT EXISTS`` are idempotent, so a data transaction that later
fails leaves nothing wrong behind, and data transactions hold no DDL locks.

With ``schema.evolution=basic`` a column the source widened (see :func:`.types.widened`) is
changed to the wider type before the rows that need it are written; a replayed batch finds it
wide already. Columns are never narrowed nor changed to another family.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from tideflow.connectors.destinations.postgres.config import PostgresDestinationConfig
from tideflow.connectors.destinations.postgres.types import column_type, widened
from tideflow.errors import TerminalError
from tideflow.events import TableSchema

log = logging.getLogger(__name__)

TS_COLUMN = "__source_ts_ms"
LSN_COLUMN = "__source_lsn"
DELETED_COLUMN = "__deleted"
#: ``__source_ts_ms``'s default: the chunk time a snapshot load sets with ``SET LOCAL`` (NULL
#: in any other session), so binary COPY chunks need no per-row metadata (ADR 0005).
TS_SETTING = "tideflow.ts_ms"
TS_DEFAULT = f"(NULLIF(current_setting('{TS_SETTING}', true), ''))::bigint"


@dataclass
class DestTable:
    """What the destination has for one source table (the catalogue, refreshed on DDL)."""

    schema: str
    name: str
    columns: dict[str, str]  # column → type as the catalogue formats it
    key: tuple[str, ...]  # columns identifying a row (the primary key in upsert mode)
    has_pk: bool
    defaults: dict[str, str] = field(default_factory=dict)  # column → default expression

    @property
    def qualified(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)


class Catalog:
    """Creates and evolves destination tables; one per connection (caches are per session)."""

    def __init__(
        self, conn: psycopg.Connection[tuple[object, ...]], config: PostgresDestinationConfig
    ) -> None:
        self.conn = conn
        self.config = config
        self._tables: dict[str, DestTable] = {}
        # Source schema identity → checked destination table; avoids re-checking every batch.
        self._checked: dict[int, tuple[TableSchema, DestTable]] = {}
        self._schema_ready = False

    def ident(self, name: str) -> str:
        return name if self.config.quote_identifiers else name.lower()

    def key_of(self, table: TableSchema) -> tuple[str, ...]:
        """The columns identifying a row of ``table`` at the destination (may be empty)."""
        mode = self.config.primary_key_mode
        if mode == "none":
            return ()
        if mode == "record_value":
            fields = [f.strip() for f in (self.config.primary_key_fields or "").split(",")]
            names = tuple(self.ident(f) for f in fields if f)
            if not names:
                raise TerminalError(
                    "primary.key.mode=record_value needs primary.key.fields (comma-separated "
                    "column names)",
                    code="invalid_config",
                )
            return names
        return tuple(self.ident(k) for k in table.key)

    def ensure(self, table: TableSchema) -> DestTable:
        """The destination table for ``table``, created or evolved as needed."""
        hit = self._checked.get(id(table))
        if hit is not None and hit[0] is table:
            return hit[1]
        dest = self._ensure(table)
        self._checked[id(table)] = (table, dest)
        return dest

    def _ensure(self, table: TableSchema) -> DestTable:
        cfg = self.config
        name = self.ident(table.table)
        wanted = {self.ident(c.name): column_type(c) for c in table.columns}
        meta = {}
        if cfg.metadata_columns:
            meta = {TS_COLUMN: f"bigint DEFAULT {TS_DEFAULT}", LSN_COLUMN: "bigint"}
        if cfg.soft_delete:
            meta[DELETED_COLUMN] = "boolean DEFAULT false"
        key = self.key_of(table)
        missing_key = [k for k in key if k not in wanted]
        if missing_key:
            raise TerminalError(
                f"key column(s) {', '.join(missing_key)} are not columns of {table.name}",
                code="invalid_config",
            )
        dest = self._tables.get(name) or self._load(name, key)
        with self.conn.transaction():
            if not self._schema_ready:
                schema = sql.Identifier(cfg.schema_name)
                self.conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
                self._schema_ready = True
            if dest is None:
                self._create(name, {**wanted, **meta}, key if cfg.insert_mode == "upsert" else ())
            else:
                new = {c: t for c, t in wanted.items() if c not in dest.columns}
                if new and cfg.schema_evolution == "none":
                    raise TerminalError(
                        f"{table.name} has new column(s) {', '.join(new)} that "
                        f"{cfg.schema_name}.{name} lacks and schema.evolution is none; add them "
                        "at the destination or set schema.evolution=basic",
                        code="schema_mismatch",
                    )
                new.update({c: t for c, t in meta.items() if c not in dest.columns})
                for column, type_ in new.items():
                    self.conn.execute(
                        sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                            dest.qualified, sql.Identifier(column), sql.SQL(type_)
                        )
                    )
                wider = cfg.schema_evolution == "basic" and self._widen(dest, wanted)
                stamped = self._stamp_default(dest)
                if not new and not wider and not stamped:
                    return dest
        loaded = self._load(name, key)
        assert loaded is not None
        return loaded

    def _stamp_default(self, dest: DestTable) -> bool:
        """Give a ``__source_ts_ms`` without a default (a table created before snapshot loads
        used it) the default :data:`TS_DEFAULT`; whether it did. A default the user set is
        left alone (binary chunks then go row by row, see :mod:`.bulk`)."""
        if not self.config.metadata_columns:
            return False
        if TS_COLUMN not in dest.columns or TS_COLUMN in dest.defaults:
            return False
        self.conn.execute(
            sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}").format(
                dest.qualified, sql.Identifier(TS_COLUMN), sql.SQL(TS_DEFAULT)
            )
        )
        return True

    def _widen(self, dest: DestTable, wanted: dict[str, str]) -> bool:
        """Change columns narrower than the source's to the wider type; whether any changed."""
        if not any(widened(dest.columns[c], t) for c, t in wanted.items() if c in dest.columns):
            return False
        # invariant 8: widen, never narrow. Another writer may have widened further since this
        # catalogue was read: decide on the table as it is now, under the lock ALTER takes
        # anyway.
        self.conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(dest.qualified))
        fresh = self._load(dest.name, dest.key) or dest
        changed = False
        for column, type_ in wanted.items():
            current = fresh.columns.get(column)
            wider = widened(current, type_) if current is not None else None
            if wider is None:
                continue
            self.conn.execute(
                sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {}").format(
                    dest.qualified, sql.Identifier(column), sql.SQL(wider)
                )
            )
            log.info(
                "widened %s.%s.%s from %s to %s to follow the source",
                dest.schema,
                dest.name,
                column,
                current,
                wider,
            )
            changed = True
        return changed

    def _create(self, name: str, columns: dict[str, str], pk: tuple[str, ...]) -> None:
        parts = [sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, t in columns.items()]
        if pk:
            parts.append(
                sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, pk)))
            )
        self.conn.execute(
            sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
                sql.Identifier(self.config.schema_name, name), sql.SQL(", ").join(parts)
            )
        )

    def _load(self, name: str, key: tuple[str, ...]) -> DestTable | None:
        rows = self.conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), "
            "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY a.attnum",
            (self.config.schema_name, name),
        ).fetchall()
        if not rows:
            self._tables.pop(name, None)
            return None
        pk_row = self.conn.execute(
            "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND i.indisprimary",
            (self.config.schema_name, name),
        ).fetchone()
        dest = DestTable(
            self.config.schema_name,
            name,
            {str(r[0]): str(r[1]) for r in rows},
            key,
            has_pk=bool(pk_row and pk_row[0]),
            defaults={str(r[0]): str(r[2]) for r in rows if r[2] is not None},
        )
        self._tables[name] = dest
        return dest

    def forget(self) -> None:
        """Drop every cache (after a reconnect or a statement that found them stale)."""
        self._tables.clear()
        self._checked.clear()
        self._schema_ready = False
