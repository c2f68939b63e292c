"""Destination tables: names, column types from portable kinds, creation and evolution.

DDL commits implicitly in MySQL/MariaDB, so tables and new columns are made before a batch's
data transaction; both are idempotent (``IF NOT EXISTS``), so a replayed batch finds them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, TypeAlias

import pymysql

from tideflow.connectors.destinations.mysql.config import MySQLDestinationConfig
from tideflow.events import Column, TableSchema

Conn: TypeAlias = "pymysql.connections.Connection[Any]"

_PRECISION = re.compile(r"^(?:decimal|numeric|dec)\((\d+)\s*,\s*(\d+)\)", re.IGNORECASE)
_LENGTH = re.compile(r"^(var)?(char|binary)\((\d+)\)", re.IGNORECASE)
# InnoDB keys are limited to 3072 bytes: 768 utf8mb4 characters.
_KEY_CHARS = 768


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def column_type(col: Column) -> str:
    """The destination SQL type of a source column (from its kind, refined by its type)."""
    kind, source = col.kind, col.type.lower()
    if kind == "int":
        return "BIGINT"
    if kind == "float":
        return "DOUBLE"
    if kind == "decimal":
        if source.startswith("bigint"):  # BIGINT UNSIGNED from a MySQL source
            return "DECIMAL(20,0)"
        m = _PRECISION.match(source)
        if m and int(m.group(1)) <= 65 and int(m.group(2)) <= 30:
            return f"DECIMAL({m.group(1)},{m.group(2)})"
        return "DECIMAL(65,30)"
    if kind == "bool":
        return "TINYINT(1)"
    if kind in ("text", "enum", "other"):
        m = _LENGTH.match(source)
        if m and m.group(2).lower() == "char" and int(m.group(3)) <= _KEY_CHARS:
            return f"{'VAR' if m.group(1) else ''}CHAR({m.group(3)})"
        return f"VARCHAR({_KEY_CHARS})" if col.key else "LONGTEXT"
    if kind == "bytes":
        m = _LENGTH.match(source)
        if m and m.group(2).lower() == "binary" and int(m.group(3)) <= 3072:
            return f"VARBINARY({m.group(3)})"
        return "VARBINARY(3072)" if col.key else "LONGBLOB"
    if kind == "date":
        return "DATE"
    if kind == "time":
        # TIME(6) holds MySQL's full ±838:59:59 range, so out-of-day texts fit too.
        return "TIME(6)"
    if kind in ("timestamp", "timestamptz"):
        return "DATETIME(6)"  # timestamptz values are written in UTC
    if kind == "uuid":
        return "CHAR(36)"
    if kind in ("json", "array"):
        return "JSON"
    return "VARCHAR(255)" if col.key else "LONGTEXT"  # timetz, interval


@dataclass
class DestTable:
    name: str  # quoted `db`.`table`
    columns: set[str]
    key: tuple[str, ...]
    version: int


class Tables:
    """What the destination looks like, cached per source table and schema version."""

    def __init__(self, conn: Conn, config: MySQLDestinationConfig) -> None:
        self.conn = conn
        self.config = config
        self._cache: dict[str, DestTable] = {}

    def table_name(self, schema: TableSchema) -> str:
        prefix = self.config.table_name_prefix
        name = f"{prefix}{schema.schema}_{schema.table}" if prefix else schema.table
        return f"{quote(self.config.database)}.{quote(name)}"

    def key_of(self, schema: TableSchema) -> tuple[str, ...]:
        if self.config.insert_mode == "insert":
            return ()
        return schema.key

    def ensure(self, schema: TableSchema) -> DestTable:
        """The destination table for ``schema``, created or evolved as configured."""
        cached = self._cache.get(schema.name)
        if cached is not None and cached.version >= schema.version:
            return cached
        name = self.table_name(schema)
        existing = self._columns(schema)
        if not existing:
            self._create(name, schema)
            existing = {c.name for c in schema.columns}
        elif self.config.schema_evolution == "basic":
            for col in schema.columns:
                if col.name not in existing:
                    # invariant 2: IF NOT EXISTS keeps a replayed evolution harmless.
                    self._exec(
                        f"ALTER TABLE {name} ADD COLUMN IF NOT EXISTS {quote(col.name)} "
                        f"{column_type(col)} NULL"
                        if self._mariadb()
                        else f"ALTER TABLE {name} ADD COLUMN {quote(col.name)} "
                        f"{column_type(col)} NULL"
                    )
                    existing.add(col.name)
        table = DestTable(name, existing, self.key_of(schema), schema.version)
        self._cache[schema.name] = table
        return table

    def _create(self, name: str, schema: TableSchema) -> None:
        key = self.key_of(schema)
        defs = [
            f"{quote(c.name)} {column_type(c)} {'NOT NULL' if c.name in key else 'NULL'}"
            for c in schema.columns
        ]
        if key:
            defs.append(f"PRIMARY KEY ({', '.join(quote(k) for k in key)})")
        self._exec(
            f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(defs)}) "
            "DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
        )

    def _columns(self, schema: TableSchema) -> set[str]:
        prefix = self.config.table_name_prefix
        table = f"{prefix}{schema.schema}_{schema.table}" if prefix else schema.table
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT COLUMN_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (self.config.database, table),
            )
            return {str(r[0]) for r in cur.fetchall()}

    def _mariadb(self) -> bool:
        with self.conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            row = cur.fetchone()
        return row is not None and "mariadb" in str(row[0]).lower()

    def _exec(self, sql: str) -> None:
        with self.conn.cursor() as cur:
            cur.execute(sql)
