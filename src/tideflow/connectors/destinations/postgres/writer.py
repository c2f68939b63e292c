"""Set-based statements that apply one table's share of a batch.

Everything here runs inside the caller's data transaction. Keyed tables get their reduced
changes (:mod:`tideflow.engine.reduce`) applied as: hard deletes ``DELETE ... USING`` staging,
soft deletes and full rows ``INSERT ... SELECT ... ON CONFLICT (key) DO UPDATE``, rows with
unchanged (TOAST) values ``UPDATE ... FROM`` staging that skips those columns. With metadata
columns a position guard (``__source_lsn``) keeps a replayed older change from overwriting a
newer one (invariant 2: duplicates have no visible effect). Keyless tables and insert mode
append events in order.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any

import orjson
import psycopg
from psycopg import sql

from tideflow.connectors.destinations.postgres.config import PostgresDestinationConfig
from tideflow.connectors.destinations.postgres.copy_text import chunked
from tideflow.connectors.destinations.postgres.staging import Stager
from tideflow.connectors.destinations.postgres.tables import (
    DELETED_COLUMN,
    LSN_COLUMN,
    TS_COLUMN,
    DestTable,
)
from tideflow.engine.reduce import Change, merge_unchanged
from tideflow.events import UNCHANGED, ChangeEvent, Op, TableSchema

_UNCHANGED_ID = id(UNCHANGED)
_KIND, _UNCHANGED_COLS, _EVENTS = attrgetter("kind"), attrgetter("unchanged"), attrgetter("events")
_FIRST, _OP = itemgetter(0), attrgetter("op")
# After a batch's new rows met an existing key, up to this many batches upsert directly.
_MAX_SKIP = 64


def _json(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _lsn(event: ChangeEvent) -> int | None:
    lsn = event.position.get("lsn")
    return lsn if isinstance(lsn, int) else None


@dataclass(frozen=True)
class Mapping:
    """How a source table's rows become destination rows (built once per table schema)."""

    sources: tuple[str, ...]
    dests: tuple[str, ...]
    json_at: tuple[int, ...]  # positions of json columns (a non-string value is serialised)

    def __post_init__(self) -> None:
        getter = operator.itemgetter(*self.sources) if self.sources else None
        object.__setattr__(self, "_get", getter)
        object.__setattr__(self, "_single", len(self.sources) == 1)

    def values(self, row: dict[str, Any]) -> tuple[Any, ...]:
        """The row's values in column order (None when absent); UNCHANGED kept as is."""
        get = self._get  # type: ignore[attr-defined]
        try:
            vals = get(row) if get is not None else ()
            if self._single:  # type: ignore[attr-defined]
                vals = (vals,)
        except KeyError:
            vals = tuple(row.get(n) for n in self.sources)
        if self.json_at:
            lst = list(vals)
            for i in self.json_at:
                lst[i] = _json(lst[i])
            vals = tuple(lst)
        return vals

    def subset(self, skip: frozenset[str]) -> Mapping:
        keep = [i for i, s in enumerate(self.sources) if s not in skip]
        json = set(self.json_at)
        return Mapping(
            tuple(self.sources[i] for i in keep),
            tuple(self.dests[i] for i in keep),
            tuple(j for j, i in enumerate(keep) if i in json),
        )


class Writer:
    def __init__(
        self,
        conn: psycopg.Connection[tuple[object, ...]],
        config: PostgresDestinationConfig,
        stager: Stager,
    ) -> None:
        self.conn = conn
        self.config = config
        self.stager = stager
        self._mappings: dict[int, tuple[TableSchema, Mapping]] = {}
        # id(dest) → [dest, has a key index, batches left to skip, next skip]
        self._direct: dict[int, list[Any]] = {}

    def mapping(self, table: TableSchema) -> Mapping:
        hit = self._mappings.get(id(table))
        if hit is None or hit[0] is not table:
            lower = not self.config.quote_identifiers
            m = Mapping(
                tuple(c.name for c in table.columns),
                tuple(c.name.lower() if lower else c.name for c in table.columns),
                tuple(i for i, c in enumerate(table.columns) if c.kind == "json"),
            )
            hit = self._mappings[id(table)] = (table, m)
        return hit[1]

    def _meta_names(self, deleted: bool | None) -> list[str]:
        names = [TS_COLUMN, LSN_COLUMN] if self.config.metadata_columns else []
        if self.config.soft_delete and deleted is not None:
            names.append(DELETED_COLUMN)
        return names

    def _meta(self, event: ChangeEvent, deleted: bool | None) -> tuple[Any, ...]:
        if self.config.metadata_columns:
            lsn = event.position.get("lsn")
            meta: tuple[Any, ...] = (event.commit_ts_ms, lsn if isinstance(lsn, int) else None)
        else:
            meta = ()
        if self.config.soft_delete and deleted is not None:
            meta += (deleted,)
        return meta

    def _guard(self, target: sql.Composable, incoming: sql.Composable) -> sql.Composable:
        if not self.config.metadata_columns:
            return sql.SQL("TRUE")
        t = sql.SQL("{}.{}").format(target, sql.Identifier(LSN_COLUMN))
        i = sql.SQL("{}.{}").format(incoming, sql.Identifier(LSN_COLUMN))
        return sql.SQL("({t} IS NULL OR {i} IS NULL OR {t} <= {i})").format(t=t, i=i)

    def truncate(self, dest: DestTable) -> None:
        self.conn.execute(sql.SQL("TRUNCATE {}").format(dest.qualified))

    # Keyed tables

    def changes(self, dest: DestTable, table: TableSchema, changes: Sequence[Change]) -> None:
        mapping = self.mapping(table)
        deletes: list[Change] = []
        full: list[Change] = []
        partial: dict[frozenset[str], list[Change]] = defaultdict(list)
        kinds = list(map(_KIND, changes))
        if kinds.count("upsert") == len(kinds) and not any(map(_UNCHANGED_COLS, changes)):
            full, changes = list(changes), ()  # only full rows: no test per change
        for ch in changes:
            if ch.kind == "delete":
                if self.config.delete_enabled:
                    deletes.append(ch)
            elif ch.unchanged:
                partial[ch.unchanged].append(ch)
            else:
                full.append(ch)
        if deletes:
            if self.config.soft_delete:
                self._upsert(dest, mapping, deletes, tombstone=True)
            else:
                self._delete_keys(dest, mapping, deletes)
        if full:
            # Rows whose first change in the batch is a create are normally new at the
            # destination: COPY them straight into the table, the upsert only if one was there.
            first_ops = list(map(_OP, map(_FIRST, map(_EVENTS, full))))
            if first_ops.count(Op.CREATE) == len(full):
                new = full
            else:
                new = [ch for ch, op in zip(full, first_ops, strict=True) if op is Op.CREATE]
            if new and self._insert_new(dest, mapping, new):
                full = (
                    [ch for ch in full if ch.events[0].op is not Op.CREATE]
                    if len(new) < len(full)
                    else []
                )
            if full:
                self._upsert(dest, mapping, full, tombstone=False)
        for unchanged, group in partial.items():
            self._update_known(dest, mapping.subset(unchanged), group)

    def _full_rows(
        self, mapping: Mapping, changes: Sequence[Change], *, tombstone: bool
    ) -> Iterator[tuple[Any, ...]]:
        """Destination rows of ``changes``: the mapped values, then the metadata columns."""
        values, meta = mapping.values, self._meta
        if tombstone:
            # A before image may hold only the key (REPLICA IDENTITY DEFAULT) or unchanged
            # values: it only fills a row the destination does not have yet.
            return (
                tuple(None if v is UNCHANGED else v for v in values(ch.row)) + meta(ch.event, True)
                for ch in changes
            )
        if self.config.metadata_columns and not self.config.soft_delete:
            return ((*values(ch.row), ch.event.commit_ts_ms, _lsn(ch.event)) for ch in changes)
        return (values(ch.row) + meta(ch.event, False) for ch in changes)

    def _full_text(
        self, mapping: Mapping, changes: Sequence[Change], types: Sequence[str]
    ) -> Iterator[str]:
        """COPY text of the full rows of ``changes`` (columns of ``types``), in chunks.

        With the default metadata columns each line is rendered straight from the row dict
        and the event; otherwise through :meth:`_full_rows` tuples."""
        renderer = self.stager.renderer
        if self.config.metadata_columns and not self.config.soft_delete and not mapping.json_at:
            render = renderer.render_dict(types, mapping.sources)
            return chunked(render(ch.row, ch.event.commit_ts_ms, _lsn(ch.event)) for ch in changes)
        return renderer.lines(types, self._full_rows(mapping, changes, tombstone=False))

    def _insert_new(self, dest: DestTable, mapping: Mapping, changes: Sequence[Change]) -> bool:
        """COPY full rows straight into ``dest`` inside a savepoint; False (nothing written)
        when a key was already there, or when ``dest`` has no unique index on its key.

        For a key the destination lacks, an insert is exactly what the upsert would do, at
        about half the server time (no staging table, no ``INSERT ... SELECT``). A replay
        finds its keys present: the savepoint is rolled back and the caller upserts; after
        such a conflict the next batches of the table skip the attempt for a while.
        """
        state = self._direct.get(id(dest))
        if state is None or state[0] is not dest:
            state = self._direct[id(dest)] = [dest, self._arbiter_exists(dest), 0, 1]
        if not state[1]:
            return False
        if state[2] > 0:
            state[2] -= 1
            return False
        columns = [*mapping.dests, *self._meta_names(False)]
        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
            dest.qualified, sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        types = [dest.columns.get(c, "") for c in columns]
        try:
            with self.conn.transaction():  # a savepoint: a conflict undoes only this COPY
                self.stager.copy_text(copy_sql, self._full_text(mapping, changes, types))
        except psycopg.errors.UniqueViolation:
            state[2], state[3] = state[3], min(state[3] * 2, _MAX_SKIP)
            return False
        state[3] = 1
        return True

    def _arbiter_exists(self, dest: DestTable) -> bool:
        """Whether a unique index on exactly ``dest.key`` exists: the index ``ON CONFLICT
        (key)`` infers. Without it a plain insert could add a second row for a key."""
        if not dest.key:
            return False
        row = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = to_regclass(%s) "
            "AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indexprs IS NULL "
            "AND (SELECT array_agg(a.attname::text ORDER BY a.attname::text) "
            "     FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey))"
            " = %s::text[])",
            (dest.qualified.as_string(self.conn), sorted(dest.key)),
        ).fetchone()
        return bool(row and row[0])

    def _upsert(
        self, dest: DestTable, mapping: Mapping, changes: Sequence[Change], *, tombstone: bool
    ) -> None:
        columns = [*mapping.dests, *self._meta_names(tombstone)]
        if tombstone:
            stage = self.stager.load(
                dest, columns, self._full_rows(mapping, changes, tombstone=True)
            )
        else:
            types = [dest.columns.get(c, "") for c in columns]
            stage = self.stager.load(dest, columns, text=self._full_text(mapping, changes, types))
        cols = sql.SQL(", ").join(map(sql.Identifier, columns))
        updated = self._meta_names(True) if tombstone else [c for c in columns if c not in dest.key]
        action: sql.Composable
        if updated:
            action = sql.SQL("DO UPDATE SET {} WHERE {}").format(
                sql.SQL(", ").join(
                    sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in updated
                ),
                self._guard(sql.Identifier("t"), sql.SQL("EXCLUDED")),
            )
        else:
            action = sql.SQL("DO NOTHING")
        self.conn.execute(
            sql.SQL("INSERT INTO {} AS t ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
                dest.qualified,
                cols,
                cols,
                stage,
                sql.SQL(", ").join(map(sql.Identifier, dest.key)),
                action,
            )
        )

    def _match(self, keys: Sequence[str]) -> sql.Composable:
        return sql.SQL(" AND ").join(
            sql.SQL("t.{k} = s.{k}").format(k=sql.Identifier(k)) for k in keys
        )

    def _delete_keys(self, dest: DestTable, mapping: Mapping, changes: Sequence[Change]) -> None:
        index = dict(zip(mapping.dests, mapping.sources, strict=True))
        sources = [index[k] for k in dest.key]
        meta = [LSN_COLUMN] if self.config.metadata_columns else []
        rows = (
            (*(ch.row.get(s) for s in sources), *([_lsn(ch.event)] if meta else []))
            for ch in changes
        )
        stage = self.stager.load(dest, [*dest.key, *meta], rows)
        self.conn.execute(
            sql.SQL("DELETE FROM {} AS t USING {} AS s WHERE {} AND {}").format(
                dest.qualified,
                stage,
                self._match(dest.key),
                self._guard(sql.Identifier("t"), sql.Identifier("s")),
            )
        )

    def _update_known(self, dest: DestTable, mapping: Mapping, changes: Sequence[Change]) -> None:
        """Update rows whose after image has unchanged values, leaving those columns as is.

        A row the destination does not have is not created: its unchanged values are unknown.
        """
        columns = [*mapping.dests, *self._meta_names(False)]
        rows = (mapping.values(ch.row) + self._meta(ch.event, False) for ch in changes)
        stage = self.stager.load(dest, columns, rows)
        assignments = sql.SQL(", ").join(
            sql.SQL("{c} = s.{c}").format(c=sql.Identifier(c)) for c in columns if c not in dest.key
        )
        self.conn.execute(
            sql.SQL("UPDATE {} AS t SET {} FROM {} AS s WHERE {} AND {}").format(
                dest.qualified,
                assignments,
                stage,
                self._match(dest.key),
                self._guard(sql.Identifier("t"), sql.Identifier("s")),
            )
        )

    # Keyless tables and insert mode: events in order

    def log(
        self, dest: DestTable, table: TableSchema, events: Sequence[ChangeEvent], *, mirror: bool
    ) -> None:
        """Apply events in order; with ``mirror`` (upsert mode, keyless table) an update
        replaces the row matching its before image instead of appending a new version."""
        for is_delete, run in _runs(events, soft=self.config.soft_delete, mirror=mirror):
            if is_delete:
                self._delete_rows(dest, table, run)
            else:
                self._append(dest, table, run)

    def _append(self, dest: DestTable, table: TableSchema, events: Sequence[ChangeEvent]) -> None:
        """Append rows; a value still unknown (UNCHANGED) after merging is written as NULL."""
        mapping = self.mapping(table)
        soft = self.config.soft_delete
        columns = [*mapping.dests, *self._meta_names(False if soft else None)]

        def rows() -> Iterator[tuple[Any, ...]]:
            for ev in events:
                if ev.op is Op.DELETE:
                    if self.config.delete_enabled:  # a soft delete: append a tombstone
                        row = ev.before or ev.after or {}
                        yield _known(mapping.values(row)) + self._meta(ev, True)
                elif ev.after is not None:
                    row = merge_unchanged(ev.after, None, ev.before)
                    yield _known(mapping.values(row)) + self._meta(ev, False if soft else None)

        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
            dest.qualified, sql.SQL(", ").join(map(sql.Identifier, columns))
        )
        self.stager.copy_rows(copy_sql, [dest.columns.get(c, "") for c in columns], rows())

    def _delete_rows(
        self, dest: DestTable, table: TableSchema, events: Sequence[ChangeEvent]
    ) -> None:
        # Updates reach here only to remove their old version, which happens regardless of
        # delete.enabled (it is part of applying the update).
        events = [ev for ev in events if ev.op is not Op.DELETE or self.config.delete_enabled]
        if not events:
            return
        mapping = self.mapping(table)
        if dest.key:
            index = dict(zip(mapping.dests, mapping.sources, strict=True))
            sources = [index[k] for k in dest.key]
            key_rows = [tuple((ev.before or {}).get(s) for s in sources) for ev in events]
            stage = self.stager.load(dest, dest.key, key_rows)
            match = self._match(dest.key)
        else:
            # No key: a row is identified by its whole before image (REPLICA IDENTITY FULL);
            # compare as text so that types without an equality operator work too.
            rows = [_known(mapping.values(ev.before or {})) for ev in events]
            stage = self.stager.load(dest, mapping.dests, rows)
            match = sql.SQL(" AND ").join(
                sql.SQL("t.{k}::text IS NOT DISTINCT FROM s.{k}::text").format(k=sql.Identifier(k))
                for k in mapping.dests
            )
        self.conn.execute(
            sql.SQL("DELETE FROM {} AS t USING {} AS s WHERE {}").format(
                dest.qualified, stage, match
            )
        )


def _known(values: tuple[Any, ...]) -> tuple[Any, ...]:
    if _UNCHANGED_ID in map(id, values):
        return tuple(None if v is UNCHANGED else v for v in values)
    return values


def _runs(
    events: Sequence[ChangeEvent], *, soft: bool, mirror: bool
) -> Iterator[tuple[bool, list[ChangeEvent]]]:
    """Split events into runs of appends and runs of row deletes, keeping their order."""
    run: list[ChangeEvent] = []
    run_is_delete = False
    for ev in events:
        steps: list[bool] = []
        if ev.op is Op.DELETE:
            steps.append(not soft)
        else:
            if mirror and ev.op is Op.UPDATE and ev.before is not None:
                steps.append(True)  # remove the old version first
            steps.append(False)
        for is_delete in steps:
            if run and is_delete != run_is_delete:
                yield run_is_delete, run
                run = []
            run_is_delete = is_delete
            run.append(ev)
    if run:
        yield run_is_delete, run
