"""What a source captures: its tables, schemas and columns, parsed from the config lists.

Names are exact (case-sensitive, as stored in the catalog); ``table`` alone means
``public.table``. Column lists name ``schema.table.column``: a table that appears in the
include list keeps only its listed columns, other tables keep all of theirs; the exclude list
then drops columns. Key columns are always kept, because destinations apply changes by key.
"""

from __future__ import annotations

from dataclasses import dataclass

from tideflow.connectors.sources.postgres.config import PostgresSourceConfig, split_list
from tideflow.connectors.sources.postgres.decoder import ColumnFilter


def split_table(name: str) -> tuple[str, str]:
    """``schema.table`` → (schema, table); a bare name is in ``public``."""
    schema, sep, table = name.partition(".")
    return (schema, table) if sep else ("public", name)


def _split_column(name: str) -> tuple[str, str, str] | None:
    parts = name.split(".", 2)
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        return "public", parts[0], parts[1]
    return None


@dataclass(frozen=True, slots=True)
class Selection:
    tables: tuple[tuple[str, str], ...]
    schemas: tuple[str, ...]

    @classmethod
    def of(cls, config: PostgresSourceConfig) -> Selection:
        schemas = tuple(dict.fromkeys(config.schemas()))
        tables = tuple(
            dict.fromkeys(t for t in map(split_table, config.tables()) if t[0] not in schemas)
        )
        return cls(tables, schemas)

    @property
    def empty(self) -> bool:
        return not self.tables and not self.schemas


def column_filter(config: PostgresSourceConfig) -> ColumnFilter | None:
    """The include/exclude decision per column, or ``None`` when every column is kept."""
    include: dict[tuple[str, str], set[str]] = {}
    for item in split_list(config.column_include):
        parsed = _split_column(item)
        if parsed:
            include.setdefault(parsed[:2], set()).add(parsed[2])
    exclude = {p for p in map(_split_column, split_list(config.column_exclude)) if p}
    if not include and not exclude:
        return None

    def keep(schema: str, table: str, column: str) -> bool:
        if (schema, table, column) in exclude:
            return False
        listed = include.get((schema, table))
        return listed is None or column in listed

    return keep
