"""What a source captures: databases, tables and columns, parsed from the config lists.

Names are exact (as the server stores them); a bare table name is ambiguous in MySQL (there is
no default schema), so table entries must be ``database.table``. Column lists name
``database.table.column``: a table that appears in the include list keeps only its listed
columns; the exclude list then drops columns. Key columns are always kept, because
destinations apply changes by key.
"""

from __future__ import annotations

from dataclasses import dataclass

from tideflow.connectors.sources.mysql.config import MySQLSourceConfig, split_list
from tideflow.connectors.sources.mysql.decoder import ColumnFilter
from tideflow.errors import TerminalError


@dataclass(frozen=True, slots=True)
class Selection:
    databases: frozenset[str]
    tables: frozenset[tuple[str, str]]

    @classmethod
    def of(cls, config: MySQLSourceConfig) -> Selection:
        tables: set[tuple[str, str]] = set()
        for name in config.tables():
            db, sep, table = name.partition(".")
            if not sep or not db or not table:
                raise TerminalError(
                    f"table.include.list.user.defined entry {name!r} must be database.table",
                    code="invalid_config",
                )
            tables.add((db, table))
        return cls(frozenset(config.databases()), frozenset(tables))

    def captures(self, db: str, table: str) -> bool:
        return db in self.databases or (db, table) in self.tables

    @property
    def schemas(self) -> frozenset[str]:
        """Every database with something captured (for binlog-level filtering)."""
        return self.databases | {d for d, _ in self.tables}

    @property
    def empty(self) -> bool:
        return not self.databases and not self.tables


def column_filter(config: MySQLSourceConfig) -> ColumnFilter | None:
    """The keep decision per ``(db, table, column)``, or ``None`` when every column is kept."""
    include: dict[tuple[str, str], set[str]] = {}
    for item in split_list(config.column_include):
        parts = item.split(".", 2)
        if len(parts) == 3:
            include.setdefault((parts[0], parts[1]), set()).add(parts[2])
    exclude = {tuple(p) for p in (i.split(".", 2) for i in split_list(config.column_exclude))}
    exclude = {p for p in exclude if len(p) == 3}
    if not include and not exclude:
        return None

    def keep(db: str, table: str, column: str) -> bool:
        listed = include.get((db, table))
        if listed is not None and column not in listed:
            return False
        return (db, table, column) not in exclude

    return keep
