"""The shape of every captured table over time, keyed by binlog position.

A restart may replay binlog written before a DDL statement; those events must decode with the
shape the table had *then* (``information_schema`` only knows the shape *now*). Each time the
source learns a table's shape (at start, at a DDL statement, when a table map disagrees) it
records it here under the binlog position from which it is in force; on open it loads, per
table, the newest entry at or before the resume position.

Where it lives: connectors have no metadata-store API yet (the runtime hands sources a
position, not a store), so the history is a small SQLite file per source under a directory
the runtime gives the source (``state_dir``, default ``$TIDEFLOW_DATA_DIR/sources/<name>``).
Losing it is safe but degrades a replay across DDL to "current shape" (the binlog's own
column metadata still names the columns correctly with ``binlog_row_metadata=FULL``). The file
carries a format version (invariant 7).

Concurrency: used from the one runtime thread that owns the source; not thread-safe.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from tideflow.connectors.sources.mysql.position import BinlogPosition, file_seq
from tideflow.connectors.sources.mysql.types import BinaryMode, kind_of
from tideflow.errors import TerminalError
from tideflow.events import Column, TableSchema

FORMAT_VERSION = 1

TableKey = tuple[str, str]


def to_json(schema: TableSchema) -> str:
    return json.dumps(
        {
            "columns": [
                {"name": c.name, "type": c.type, "nullable": c.nullable} for c in schema.columns
            ],
            "key": list(schema.key),
        }
    )


def from_json(db: str, table: str, version: int, text: str, mode: BinaryMode) -> TableSchema:
    data: dict[str, Any] = json.loads(text)
    key = tuple(data["key"])
    cols = tuple(
        Column(c["name"], c["type"], kind_of(c["type"], mode), c["nullable"], c["name"] in key)
        for c in data["columns"]
    )
    return TableSchema(db, table, cols, key, version)


class SchemaHistory:
    def __init__(self, path: Path, binary_mode: BinaryMode = "bytes") -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.mode = binary_mode
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        row = self._db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        if row is None:
            self._db.execute("INSERT INTO meta VALUES ('format', ?)", (str(FORMAT_VERSION),))
        elif int(row[0]) != FORMAT_VERSION:
            raise TerminalError(
                f"schema history {path} has format {row[0]}, this version reads "
                f"{FORMAT_VERSION}; upgrade Tideflow or remove the file to rebuild it",
                code="schema_history_format",
            )
        # ``shape`` NULL marks a dropped table. (file_seq, pos) orders entries in the binlog.
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS history ("
            " file_seq INTEGER NOT NULL, pos INTEGER NOT NULL, file TEXT NOT NULL,"
            " db TEXT NOT NULL, tbl TEXT NOT NULL, version INTEGER NOT NULL, shape TEXT,"
            " PRIMARY KEY (file_seq, pos, db, tbl))"
        )

    def close(self) -> None:
        self._db.close()

    def at(self, position: BinlogPosition) -> dict[TableKey, TableSchema]:
        """Every table's shape in force at ``position`` (dropped tables left out)."""
        seq, pos = self._key(position)
        rows = self._db.execute(
            "SELECT db, tbl, version, shape FROM history h WHERE (file_seq, pos) = ("
            " SELECT file_seq, pos FROM history i WHERE i.db = h.db AND i.tbl = h.tbl"
            " AND (i.file_seq < ? OR (i.file_seq = ? AND i.pos <= ?))"
            " ORDER BY file_seq DESC, pos DESC LIMIT 1)",
            (seq, seq, pos),
        ).fetchall()
        return {
            (db, tbl): from_json(db, tbl, version, shape, self.mode)
            for db, tbl, version, shape in rows
            if shape is not None
        }

    def exact(
        self, position: BinlogPosition, db: str, table: str
    ) -> tuple[bool, TableSchema | None]:
        """The entry recorded at exactly ``position`` for a table (a replayed DDL).

        ``(False, None)`` when there is none; ``(True, None)`` when it records a drop.
        """
        row = self._db.execute(
            "SELECT version, shape FROM history WHERE file_seq = ? AND pos = ? AND db = ?"
            " AND tbl = ?",
            (*self._key(position), db, table),
        ).fetchone()
        if row is None:
            return False, None
        return True, None if row[1] is None else from_json(db, table, row[0], row[1], self.mode)

    def record(
        self, position: BinlogPosition, db: str, table: str, schema: TableSchema | None
    ) -> None:
        """Remember ``schema`` (``None``: dropped) as in force from ``position`` on.

        A second record at the same position keeps the first: on a replay the shape learned
        the first time is the one that was true then.
        """
        version = schema.version if schema is not None else self.latest_version(db, table)
        self._db.execute(
            "INSERT OR IGNORE INTO history VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                file_seq(position.file),
                position.pos,
                position.file,
                db,
                table,
                version,
                to_json(schema) if schema is not None else None,
            ),
        )

    def latest_version(self, db: str, table: str) -> int:
        row = self._db.execute(
            "SELECT max(version) FROM history WHERE db = ? AND tbl = ?", (db, table)
        ).fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    @staticmethod
    def _key(position: BinlogPosition) -> tuple[int, int]:
        return file_seq(position.file), position.pos
