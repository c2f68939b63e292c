"""Destination tables: names, column types from portable kinds, creation and evolution.

DDL commits implicitly in MySQL/MariaDB, so tables and new columns are made before a batch's
data transaction; both are idempotent (``IF NOT EXISTS``), so a replayed batch finds them.

Evolution (``schema.evolution=basic``) adds new columns and widens existing ones when the
source widens them (``VARCHAR(300)`` → ``VARCHAR(400)``, ``DECIMAL(30,10)`` → ``(40,12)``,
``BINARY(4)`` → ``(8)``, ``INT`` → ``BIGINT UNSIGNED``): without it the first longer value
is refused and the pipeline stops. Columns are never narrowed, dropped or changed to another
type family, since older rows still hold values of the old shape.
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


_BOUNDED = re.compile(r"^(var)?(char|binary)\((\d+)\)$")
_DECIMAL = re.compile(r"^decimal\((\d+),(\d+)\)")
_UNBOUNDED = {"char": "LONGTEXT", "binary": "LONGBLOB"}


def _size(sql_type: str) -> tuple[str, int | None] | None:
    """(family, length; None: unbounded) of a text or binary type, else None."""
    t = sql_type.lower()
    m = _BOUNDED.match(t)
    if m:
        return m.group(2), int(m.group(3))
    if t == "longtext":
        return "char", None
    if t == "longblob":
        return "binary", None
    return None


def _digits(sql_type: str) -> tuple[int, int] | None:
    """(integer digits, scale) of a decimal or integer type."""
    t = sql_type.lower()
    m = _DECIMAL.match(t)
    if m:
        return int(m.group(1)) - int(m.group(2)), int(m.group(2))
    if t.startswith("bigint"):
        return 20 if "unsigned" in t else 19, 0
    return None


def widened(current: str, wanted: str) -> str | None:
    """The type to change a destination column of type ``current`` to so that values of type
    ``wanted`` fit, or None when it already holds them (or the change is not a widening)."""
    have, want = _size(current), _size(wanted)
    if have is not None and want is not None and have[0] == want[0]:
        family, length = have
        if length is None or (want[1] is not None and want[1] <= length):
            return None
        if want[1] is None:
            return _UNBOUNDED[family]
        return f"VAR{family.upper()}({want[1]})"
    digits, need = _digits(current), _digits(wanted)
    if digits is not None and need is not None and (need[0] > digits[0] or need[1] > digits[1]):
        whole, scale = max(digits[0], need[0]), max(digits[1], need[1])
        if whole + scale > 65 or scale > 30:
            return "DECIMAL(65,30)"
        return f"DECIMAL({whole + scale},{scale})"
    return None


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
        types = self._columns(schema)
        if not types:
            self._create(name, schema)
            types = {c.name: column_type(c) for c in schema.columns}
        elif self.config.schema_evolution == "basic":
            self._evolve(name, schema, types)
        table = DestTable(name, set(types), self.key_of(schema), schema.version)
        self._cache[schema.name] = table
        return table

    def _evolve(self, name: str, schema: TableSchema, types: dict[str, str]) -> None:
        """Add missing columns and widen narrower ones (``types``: name → current type)."""
        key = self.key_of(schema)
        for col in schema.columns:
            wanted = column_type(col)
            current = types.get(col.name)
            if current is None:
                # invariant 2: IF NOT EXISTS keeps a replayed evolution harmless.
                exists = " IF NOT EXISTS" if self._mariadb() else ""
                self._exec(f"ALTER TABLE {name} ADD COLUMN{exists} {quote(col.name)} {wanted} NULL")
                types[col.name] = wanted
                continue
            wider = widened(current, wanted)
            if wider is not None:  # a replay finds it wide already: nothing to do
                null = "NOT NULL" if col.name in key else "NULL"
                self._exec(f"ALTER TABLE {name} MODIFY COLUMN {quote(col.name)} {wider} {null}")
                types[col.name] = wider

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

    def _columns(self, schema: TableSchema) -> dict[str, str]:
        """Name → type of the destination table's columns (empty: no table yet)."""
        prefix = self.config.table_name_prefix
        table = f"{prefix}{schema.schema}_{schema.table}" if prefix else schema.table
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                (self.config.database, table),
            )
            return {str(r[0]): str(r[1]) for r in cur.fetchall()}

    def _mariadb(self) -> bool:
        with self.conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            row = cur.fetchone()
        return row is not None and "mariadb" in str(row[0]).lower()

    def _exec(self, sql: str) -> None:
        with self.conn.cursor() as cur:
            cur.execute(sql)
