"""The shape of each captured table at the current point of the binlog stream.

The tracker starts from :class:`.SchemaHistory` at the resume position (falling back to
``information_schema`` for tables it has never seen), follows DDL parsed by :mod:`.ddl`, and
records every new shape in the history under the position where it takes effect. Each change
gets the next ``version`` for that table, so destinations see when to evolve.

Rule for a DDL statement: apply the parsed change to the shape we had (that is right even when
replaying old binlog), then, if ``information_schema`` agrees on the column names, take its
richer facts (exact types, nullability, key) — it can only be trusted when it shows the same
columns, since the server may already be several DDLs further.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace

from tideflow.connectors.sources.mysql import ddl
from tideflow.connectors.sources.mysql.position import BinlogPosition
from tideflow.connectors.sources.mysql.schema_history import SchemaHistory, TableKey
from tideflow.connectors.sources.mysql.types import BinaryMode, kind_of
from tideflow.events import Column, TableSchema

LoadSchemas = Callable[[Iterable[TableKey]], dict[TableKey, TableSchema]]


class SchemaTracker:
    def __init__(
        self,
        history: SchemaHistory,
        load: LoadSchemas,
        captured: Callable[[str, str], bool],
        mode: BinaryMode = "bytes",
    ) -> None:
        self.history = history
        self._load = load
        self._captured = captured
        self._mode = mode
        self.schemas: dict[TableKey, TableSchema] = {}

    def start(self, position: BinlogPosition, tables: Iterable[TableKey]) -> None:
        """Shapes in force at ``position``; tables unknown to the history come from the server."""
        self.schemas = {k: v for k, v in self.history.at(position).items() if self._captured(*k)}
        missing = [t for t in tables if t not in self.schemas]
        for key, schema in self._load(missing).items():
            self._set(position, key, schema)

    def get(self, key: TableKey) -> TableSchema | None:
        return self.schemas.get(key)

    def replace_from_binlog(
        self, position: BinlogPosition, key: TableKey, candidate: TableSchema
    ) -> TableSchema:
        """Adopt a shape derived from a table map that disagrees with what we had.

        The server's current shape wins when it has the same columns (it knows types
        exactly); otherwise the table map's own description is used.
        """
        current = self._load([key]).get(key)
        names = [c.name for c in candidate.columns]
        chosen = current if current is not None and _names(current) == names else candidate
        return self._set(position, key, chosen)

    def apply(self, position: BinlogPosition, changes: list[ddl.Change]) -> list[TableSchema]:
        """Follow DDL at ``position`` (the end of its event); return truncated tables."""
        truncated: list[TableSchema] = []
        for change in changes:
            if isinstance(change, ddl.TruncateTable):
                schema = self.schemas.get((change.db, change.table))
                if schema is not None:
                    truncated.append(schema)
            elif isinstance(change, ddl.DropTable):
                self._drop(position, (change.db, change.table))
            elif isinstance(change, ddl.RenameTable):
                self._rename(position, (change.db, change.table), (change.new_db, change.new_table))
            elif isinstance(change, ddl.CreateTable):
                self._create(position, change)
            elif isinstance(change, ddl.AlterTable):
                self._alter(position, change)
            elif self._captured(change.db, change.table):  # Unparsed
                self._refresh(position, (change.db, change.table), None)
        return truncated

    def _alter(self, position: BinlogPosition, change: ddl.AlterTable) -> None:
        key = (change.db, change.table)
        before = self.schemas.get(key)
        if before is None and not self._captured(*key):
            if change.rename_to:
                self._rename(position, key, change.rename_to)
            return
        candidate = apply_ops(before, change.ops, self._mode) if before is not None else None
        if change.rename_to and change.rename_to != key:
            if candidate is not None:
                self.schemas[key] = candidate
            self._rename(position, key, change.rename_to)
            return
        self._refresh(position, key, candidate)

    def _create(self, position: BinlogPosition, change: ddl.CreateTable) -> None:
        key = (change.db, change.table)
        if not self._captured(*key):
            return
        candidate: TableSchema | None = None
        if change.like is not None:
            like = self.schemas.get(change.like)
            if like is not None:
                candidate = replace(like, schema=key[0], table=key[1])
        elif change.columns:
            candidate = TableSchema(
                key[0],
                key[1],
                tuple(_column(c, self._mode, c.name in change.key) for c in change.columns),
                change.key,
            )
        self._refresh(position, key, candidate)

    def _drop(self, position: BinlogPosition, key: TableKey) -> None:
        if self.schemas.pop(key, None) is not None:
            self.history.record(position, *key, None)

    def _rename(self, position: BinlogPosition, old: TableKey, new: TableKey) -> None:
        schema = self.schemas.get(old)
        self._drop(position, old)
        if self._captured(*new):
            candidate = replace(schema, schema=new[0], table=new[1]) if schema else None
            self._refresh(position, new, candidate)

    def _refresh(
        self, position: BinlogPosition, key: TableKey, candidate: TableSchema | None
    ) -> None:
        found, recorded = self.history.exact(position, *key)
        if found:  # a replayed DDL: what we learned the first time holds
            if recorded is None:
                self.schemas.pop(key, None)
            else:
                self.schemas[key] = recorded
            return
        current = self._load([key]).get(key)
        agrees = (
            current is not None and candidate is not None and _names(current) == _names(candidate)
        )
        chosen = current if candidate is None or agrees else candidate
        if chosen is not None:
            self._set(position, key, chosen)

    def _set(self, position: BinlogPosition, key: TableKey, schema: TableSchema) -> TableSchema:
        previous = self.schemas.get(key)
        if previous is not None and _same(previous, schema):
            return previous
        version = max(self.history.latest_version(*key), previous.version if previous else 0)
        schema = replace(schema, schema=key[0], table=key[1], version=version + 1)
        self.history.record(position, *key, schema)
        self.schemas[key] = schema
        return schema


def _names(schema: TableSchema) -> list[str]:
    return [c.name for c in schema.columns]


def _same(a: TableSchema, b: TableSchema) -> bool:
    return a.columns == b.columns and a.key == b.key


def _column(c: ddl.ColumnDef, mode: BinaryMode, key: bool) -> Column:
    return Column(c.name, c.type, kind_of(c.type, mode), c.nullable and not key, key)


def apply_ops(schema: TableSchema, ops: Iterable[ddl.ColumnOp], mode: BinaryMode) -> TableSchema:
    """The shape after an ALTER TABLE's column operations (pure; used for replays)."""
    cols = list(schema.columns)
    key = list(schema.key)

    def index(name: str) -> int:
        for i, c in enumerate(cols):
            if c.name.lower() == name.lower():
                return i
        return -1

    def place(col: Column, first: bool, after: str | None) -> None:
        if first:
            cols.insert(0, col)
        elif after is not None and index(after) >= 0:
            cols.insert(index(after) + 1, col)
        else:
            cols.append(col)

    for op in ops:
        if isinstance(op, ddl.AddColumn):
            if index(op.column.name) < 0:
                place(_column(op.column, mode, False), op.first, op.after)
        elif isinstance(op, ddl.DropColumn):
            i = index(op.name)
            if i >= 0:
                dropped = cols.pop(i)
                key = [k for k in key if k != dropped.name]
        elif isinstance(op, ddl.ModifyColumn):
            i = index(op.old)
            if i < 0:
                continue
            old = cols.pop(i)
            new_def = op.column
            is_key = old.name in key
            if new_def.type:
                col = _column(new_def, mode, is_key)
            else:  # RENAME COLUMN keeps the definition
                col = Column(new_def.name, old.type, old.kind, old.nullable, is_key)
            if op.first or op.after is not None:
                place(col, op.first, op.after)
            else:
                cols.insert(i, col)
            key = [col.name if k == old.name else k for k in key]
        elif isinstance(op, ddl.PrimaryKey):
            key = list(op.columns)
    key_set = set(key)
    cols = [
        Column(c.name, c.type, c.kind, c.nullable and c.name not in key_set, c.name in key_set)
        for c in cols
    ]
    return TableSchema(schema.schema, schema.table, tuple(cols), tuple(key), schema.version)
