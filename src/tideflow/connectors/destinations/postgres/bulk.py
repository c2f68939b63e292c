"""Snapshot chunks (:class:`~tideflow.events.SnapshotChunk`) loaded with one COPY.

A chunk's lines are the source's COPY text; when every field lands in a destination column of
the type this destination maps its source column to (see :mod:`.types`), the text loads as it
is, with the metadata columns appended to each line (the emission time, no LSN, ``__deleted``
false), exactly the values the per-row path writes for an ``op=r`` event.

A binary chunk (ADR 0005) loads with ``COPY ... (FORMAT binary)`` of its data columns only:
binary input is type-exact, so every column must have the source's own type here, and the
metadata comes from the columns' defaults — ``__source_ts_ms`` reads the chunk time each
loading transaction sets first (:data:`.tables.TS_DEFAULT`), ``__source_lsn`` has none,
``__deleted`` defaults to false. Tables this destination creates have those defaults; a table
whose defaults differ takes the chunk row by row. Binary input skips the per-field text
parsing: about 18 % less destination CPU per row than the text lines with their metadata.

Keyed tables (upsert mode, primary key): the chunk is COPYed straight into the table inside a
savepoint — the common case, an initial snapshot into rows the destination does not have yet.
A key already there (the chunk replayed after a crash, or a row streamed before the chunk's
low watermark) makes that COPY fail with a unique violation; the savepoint is rolled back and
the chunk goes through a staging table and ``INSERT ... ON CONFLICT DO UPDATE`` (invariant 2:
a replay has no visible effect). A keyed chunk of at least ``_SPLIT_ROWS`` rows is cut by line
into ``snapshot.load.connections`` parts (default 2) loaded at the same time, one by the
caller's connection in its transaction and the others by helper connections (see
:mod:`.writers`): a backend parses a COPY and maintains the indexes on one core, the bottleneck
of a snapshot. The price: two insertion points in one ascending primary-key index split its
pages in halves (the index ends ~40 % larger than a one-connection load leaves it) and the
backends contend for WAL insertion, so each row costs 10-40 % more destination CPU; on the
2-core benchmark machine the wall time still dropped by a quarter (3M rows: 6.5-6.8 s instead
of 8.8 s). ``snapshot.load.connections`` 1 loads with the least CPU and a compact index.
Keyless tables and insert mode append on the caller's connection alone, as the per-row path
does (a part landing twice would be a duplicate row there).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from psycopg import errors, sql

from tideflow import copybinary
from tideflow.connectors.destinations.postgres.config import PostgresDestinationConfig
from tideflow.connectors.destinations.postgres.tables import (
    DELETED_COLUMN,
    LSN_COLUMN,
    TS_COLUMN,
    TS_SETTING,
    DestTable,
)
from tideflow.connectors.destinations.postgres.types import column_type
from tideflow.connectors.destinations.postgres.writers import Conn, Writers
from tideflow.events import SnapshotChunk

# format_type() spellings of the names column_type() uses.
_ALIASES = {
    "timestamptz": "timestamp with time zone",
    "timestamp": "timestamp without time zone",
    "timetz": "time with time zone",
    "time": "time without time zone",
    "varbit": "bit varying",
    "bool": "boolean",
    "int2": "smallint",
    "int4": "integer",
    "int": "integer",
    "int8": "bigint",
    "float4": "real",
    "float8": "double precision",
    "decimal": "numeric",
    "varchar": "character varying",
}
_TEXT_LIKE = frozenset({"text", "varchar", "bpchar", "name"})
_STAGE = sql.Identifier("_tf_snapshot_chunk")
#: connections loading one chunk at the same time (the caller's included), by default
WRITERS = 2
# Below this, a second transaction and its commit cost more than the parallel load saves.
_SPLIT_ROWS = 2_000


def _reads_binary(source_type: str, dest_type: str) -> bool:
    """Whether a column of ``dest_type`` reads the binary form of ``source_type`` values: the
    same type, or text for the character types (their binary form is the text itself)."""
    if canonical(source_type) == canonical(dest_type):
        return True
    return canonical(dest_type) == "text" and source_type.split("(")[0] in _TEXT_LIKE


def canonical(type_name: str) -> str:
    t = " ".join(type_name.strip().lower().split())
    dims = ""
    while t.endswith("[]"):
        t, dims = t[:-2].rstrip(), dims + "[]"
    return _ALIASES.get(t, t) + dims


class ChunkLoader:
    """Loads chunks for one destination connection; caches which layouts load as text."""

    def __init__(
        self,
        conn: Conn,
        config: PostgresDestinationConfig,
        connect: Callable[[], Conn] | None = None,
        writers: int = WRITERS,
        on_begin: Callable[[Conn], None] | None = None,
    ) -> None:
        """``connect`` opens a helper connection like ``conn`` (None: ``conn`` loads alone);
        ``on_begin`` runs first in each helper transaction (the write fence)."""
        self.conn = conn
        self.config = config
        self._columns: dict[tuple[object, ...], list[str] | None] = {}
        self._writers = Writers(connect, writers - 1, on_begin) if connect and writers > 1 else None

    def close(self) -> None:
        """Close the helper connections (the caller owns ``conn``)."""
        if self._writers is not None:
            self._writers.close()

    def ident(self, name: str) -> str:
        return name if self.config.quote_identifiers else name.lower()

    def columns(self, chunk: SnapshotChunk, dest: DestTable) -> list[str] | None:
        """The destination columns of the chunk's fields, or None when its lines cannot load
        as they are (a value re-encoded by the source, a column of another type, a key the
        destination cannot upsert by)."""
        cache_key = (chunk.table, chunk.columns, tuple(dest.columns.items()), dest.key, dest.has_pk)
        if cache_key in self._columns:
            return self._columns[cache_key]
        found = self._check(chunk, dest)
        self._columns[cache_key] = found
        return found

    def _check(self, chunk: SnapshotChunk, dest: DestTable) -> list[str] | None:
        cfg = self.config
        if not chunk.exact:
            return None
        keyed = cfg.insert_mode == "upsert" and dest.key
        if keyed and (cfg.primary_key_mode != "record_key" or not dest.has_pk):
            return None  # the per-row path decides (and reports a missing key)
        if chunk.binary and not self._defaults_fill_metadata(dest):
            return None
        names = []
        for name in chunk.columns:
            col = chunk.table.column(name)
            dest_name = self.ident(name)
            have = dest.columns.get(dest_name)
            if col is None or have is None or canonical(have) != canonical(column_type(col)):
                return None
            if chunk.binary and not _reads_binary(col.type, have):
                return None  # binary input is type-exact
            names.append(dest_name)
        return names

    def _defaults_fill_metadata(self, dest: DestTable) -> bool:
        """Whether the metadata columns' defaults give a binary chunk's rows the values the
        per-row path writes: the chunk time (:data:`.tables.TS_DEFAULT`), no LSN, not
        deleted."""
        cfg, defaults = self.config, dest.defaults
        stamped = cfg.metadata_columns and TS_COLUMN in dest.columns and LSN_COLUMN in dest.columns
        if stamped and (TS_SETTING not in defaults.get(TS_COLUMN, "") or LSN_COLUMN in defaults):
            return False
        if cfg.soft_delete and DELETED_COLUMN in dest.columns:
            return defaults.get(DELETED_COLUMN) == "false"
        return True

    def load(self, chunk: SnapshotChunk, dest: DestTable, columns: list[str]) -> None:
        """Write the chunk's rows inside the caller's transaction; the parts of a large keyed
        chunk loaded by helper connections are committed before this returns (:mod:`.writers`)."""
        how = self._how(chunk, dest, columns)
        if not (self.config.insert_mode == "upsert" and dest.key):
            how.begin(self.conn)
            _copy(self.conn, dest.qualified, how, chunk.data)
            return
        writers = self._writers
        if writers is None or chunk.rows < _SPLIT_ROWS:
            self._keyed(self.conn, dest, how, chunk.data)
            return
        own, *others = chunk.parts(writers.size + 1)
        writers.run(
            lambda conn, part: self._keyed(conn, dest, how, part),
            others,
            lambda: self._keyed(self.conn, dest, how, own),
        )

    def _how(self, chunk: SnapshotChunk, dest: DestTable, columns: list[str]) -> _Load:
        cfg = self.config
        meta: list[str] = []
        suffix = b""
        if cfg.metadata_columns and TS_COLUMN in dest.columns and LSN_COLUMN in dest.columns:
            suffix += b"\t%d\t\\N" % chunk.commit_ts_ms
            meta += [TS_COLUMN, LSN_COLUMN]
        if cfg.soft_delete and DELETED_COLUMN in dest.columns:
            suffix += b"\tf"
            meta.append(DELETED_COLUMN)
        if chunk.binary:  # the metadata comes from the columns' defaults (_check)
            ts = chunk.commit_ts_ms if TS_COLUMN in meta else None
            return _Load(columns, [*columns, *meta], binary=True, ts_ms=ts)
        return _Load([*columns, *meta], [*columns, *meta], suffix=suffix)

    def _keyed(self, conn: Conn, dest: DestTable, how: _Load, data: bytes) -> None:
        """Insert the rows, or upsert them when some keys are there (inside a transaction)."""
        how.begin(conn)
        try:
            with conn.transaction():  # a savepoint
                _copy(conn, dest.qualified, how, data)
            return
        except errors.UniqueViolation:
            pass  # some keys are there already: upsert the chunk instead
        self._upsert(conn, dest, how, data)

    def _upsert(self, conn: Conn, dest: DestTable, how: _Load, data: bytes) -> None:
        # The stage takes the destination's defaults: a binary chunk's metadata (see _check).
        conn.execute(
            sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                _STAGE, dest.qualified
            )
        )
        _copy(conn, _STAGE, how, data)
        names = how.written
        cols = sql.SQL(", ").join(map(sql.Identifier, names))
        updated = [c for c in names if c not in dest.key]
        action: sql.Composable = sql.SQL("DO NOTHING")
        if updated:
            guard: sql.Composable = sql.SQL("TRUE")
            if LSN_COLUMN in names:
                # Snapshot rows carry no LSN, so this holds; kept for the writer's semantics.
                guard = sql.SQL("(t.{c} IS NULL OR EXCLUDED.{c} IS NULL OR t.{c} <= EXCLUDED.{c})")
                guard = guard.format(c=sql.Identifier(LSN_COLUMN))
            action = sql.SQL("DO UPDATE SET {} WHERE {}").format(
                sql.SQL(", ").join(
                    sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in updated
                ),
                guard,
            )
        conn.execute(
            sql.SQL("INSERT INTO {} AS t ({}) SELECT {} FROM {} ON CONFLICT ({}) {}").format(
                dest.qualified,
                cols,
                cols,
                _STAGE,
                sql.SQL(", ").join(map(sql.Identifier, dest.key)),
                action,
            )
        )
        conn.execute(sql.SQL("DROP TABLE {}").format(_STAGE))


@dataclass(frozen=True)
class _Load:
    """How a chunk's data loads: the columns COPY fills (``copied``) and those the rows end up
    with (``written``, the copied ones plus metadata from defaults), the format, and what
    each transaction sets first (the chunk time a binary chunk's default reads)."""

    copied: list[str]
    written: list[str]
    binary: bool = False
    ts_ms: int | None = None
    suffix: bytes = b""  # text: the metadata fields appended to every line

    def begin(self, conn: Conn) -> None:
        if self.ts_ms is not None:
            conn.execute("SELECT set_config(%s, %s, true)", (TS_SETTING, str(self.ts_ms)))


def _copy(conn: Conn, table: sql.Composable, how: _Load, data: bytes) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN{}").format(
        table,
        sql.SQL(", ").join(map(sql.Identifier, how.copied)),
        sql.SQL(" (FORMAT binary)" if how.binary else ""),
    )
    with conn.cursor() as cur, cur.copy(statement) as copy:
        if how.binary:
            copy.write(copybinary.HEADER)
            copy.write(data)
            copy.write(copybinary.TRAILER)
        else:
            copy.write(data.replace(b"\n", how.suffix + b"\n") if how.suffix else data)
