"""Chunk reads of Postgres tables for the snapshot engine (:mod:`tideflow.engine.snapshot`).

Each :class:`PostgresChunkReader` holds one plain autocommit connection (never the replication
connection) and is used by one thread. Values are selected as text and converted with the
same :class:`~.types.TypeMap` converters and column filter the streaming decoder uses, so a
chunk row and a streamed change of the same row carry equal keys and values.

Incremental chunks are read with ``COPY (SELECT ...) TO STDOUT`` and handed on as COPY text
(a :class:`~tideflow.events.SnapshotChunk`, key columns first): no per-row Python work on the
way to a Postgres destination, which loads the lines with COPY. The chunk's ``decode`` and
``key`` (see :mod:`.copy_lines`) turn a line into the values a streamed change carries; the
connection pins the same output styles as the replication session, so the text is the same.
When the engine sets :attr:`PostgresChunkReader.binary_chunks` (every pipeline of the source
loads binary chunks as they are), tables whose column types :mod:`.copy_binary` decodes are read
with ``(FORMAT binary)`` instead: less work for both servers (ADR 0005).

Watermarks are transactional logical messages (``pg_logical_emit_message(true, ...)``), each
committed on its own before (low) or after (high) the chunk query (Postgres 14+ sends them
through pgoutput). Chunk queries run in a READ ONLY transaction, so a user filter calling a
function with side effects fails.
"""

from __future__ import annotations

import contextlib
import select
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import TypeVar

import psycopg
from psycopg import pq, sql

from tideflow import copybinary
from tideflow.connectors.sources.postgres import catalog, connection, copy_binary, copy_lines
from tideflow.connectors.sources.postgres.config import PostgresSourceConfig
from tideflow.connectors.sources.postgres.selection import column_filter, split_table
from tideflow.connectors.sources.postgres.types import BYTEA, TypeMap
from tideflow.engine.snapshot import filters
from tideflow.engine.snapshot.reader import ChunkRows, SnapshotError, TablePlan, TextKey
from tideflow.engine.snapshot.watermark import PREFIX
from tideflow.events import Column, SnapshotChunk, TableSchema

_COLUMNS = """
SELECT a.attname::text, a.atttypid::int8, a.atttypmod, a.attnotnull
FROM pg_attribute a
WHERE a.attrelid = %(r)s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""
_TABLE = """
SELECT c.oid::int8, greatest(c.reltuples, 0)::int8
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')
"""

# Transactions the snapshot sees as running although their commit (or abort) is recorded.
_FINISHING = """
SELECT count(*) FROM pg_snapshot_xip(pg_current_snapshot()) AS x
WHERE pg_xact_status(x) <> 'in progress'
"""
_SETTLE_TRIES = 200
_INTEGER_KEYS = frozenset({"int2", "int4", "int8"})
T = TypeVar("T")


class PostgresChunkReader:
    """Implements :class:`tideflow.engine.snapshot.reader.ChunkReader` for one thread."""

    def __init__(self, config: PostgresSourceConfig) -> None:
        self.config = config
        self._conn = connection.connect_sql(config)
        self._types = TypeMap(partial(catalog.pg_types, self._conn), config.binary_handling_mode)
        self._keep = column_filter(config)
        self._layouts: dict[
            str, tuple[TablePlan, copy_lines.Layout, copy_binary.BinaryLayout | None]
        ] = {}
        self._spans: dict[str, tuple[TablePlan, list[int] | None]] = {}
        #: read incremental chunks in binary where the table allows (set by the engine when
        #: every pipeline of the source loads binary chunks, ADR 0005)
        self.binary_chunks = False

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()

    def plan(self, table: str, surrogate_key: str | None) -> TablePlan:
        schema_name, name = split_table(table)
        row = self._conn.execute(_TABLE, (schema_name, name)).fetchone()
        if row is None:
            raise SnapshotError(f"table {table} does not exist")
        relid, estimate = row
        facts = catalog.table_facts(self._conn, relid)
        wire = self._conn.execute(_COLUMNS, {"r": relid}).fetchall()
        self._types.prefetch({oid for _, oid, _, _ in wire})
        pk = facts.primary_key
        columns = []
        for col, oid, typmod, notnull in wire:
            if col in pk or self._keep is None or self._keep(schema_name, name, col):
                mapping = self._types.mapping(oid)
                columns.append(
                    Column(
                        col,
                        self._types.type_name(oid, typmod),
                        mapping.kind,
                        not notnull and col not in pk,
                        col in pk,
                    )
                )
        shape = TableSchema(schema_name, name, tuple(columns), pk)
        key = pk
        if surrogate_key:
            key = tuple(k.strip() for k in surrogate_key.split(",") if k.strip())
            missing = [k for k in key if shape.column(k) is None]
            if missing:
                raise SnapshotError(f"surrogate key column(s) {missing} not in table {table}")
        return TablePlan(shape, key, int(estimate))

    def check_filter(self, table: str, predicate: str) -> None:
        try:
            text = filters.check(predicate)
        except filters.FilterError as exc:
            raise SnapshotError(str(exc)) from exc
        query = sql.SQL("EXPLAIN SELECT 1 FROM {} WHERE ({})").format(_ident(table), sql.SQL(text))
        try:
            with self._conn.transaction():
                self._conn.execute("SET TRANSACTION READ ONLY")
                self._conn.execute(query)
        except psycopg.Error as exc:
            raise SnapshotError(f"filter does not compile against {table}: {exc}") from exc

    def boundary(
        self, plan: TablePlan, after: TextKey | None, size: int, predicate: str | None
    ) -> TextKey | None:
        span = None if predicate else self._span(plan)
        if span is not None:
            # An integer primary key holds at most `size` rows in `size` consecutive values,
            # so arithmetic bounds keep chunks within the memory bound (invariant 6) without
            # reading `size` keys per chunk to find the next bound.
            upto = (span[0] if after is None else int(after[0])) + size
            if upto >= span[1]:
                highest = self._highest(plan)  # rows may have been added since
                if highest is None or upto >= highest:
                    return None  # the last chunk: everything after `after`
                span[1] = highest
            return (str(upto),)
        query = sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY {} OFFSET {} LIMIT 1").format(
            _key_text(plan),
            _ident(plan.schema.name),
            _where(plan, after, None, predicate),
            _order(plan),
            sql.Literal(size - 1),
        )
        row = self._conn.execute(query, _params(after, None)).fetchone()
        return tuple(row) if row is not None else None

    def _span(self, plan: TablePlan) -> list[int] | None:
        """[lowest key - 1, highest key] of a table chunked by key value, or None to chunk by
        row count: only a one-column integer primary key with at least half its value range
        used (the row estimate), where value ranges of `size` hold about `size` rows."""
        cached = self._spans.get(plan.schema.name)
        if cached is not None and cached[0] is plan:
            return cached[1]
        span = None
        key = plan.key
        integer = len(key) == 1 and _type_of(plan, key[0]) in _INTEGER_KEYS
        if integer and key == plan.schema.key and plan.estimate > 0:
            query = sql.SQL("SELECT min({k}), max({k}) FROM {t}").format(
                k=sql.Identifier(key[0]), t=_ident(plan.schema.name)
            )
            row = self._conn.execute(query).fetchone()
            if row is not None and row[0] is not None:
                low, high = int(row[0]), int(row[1])
                if high - low + 1 <= 2 * plan.estimate:
                    span = [low - 1, high]
        self._spans[plan.schema.name] = (plan, span)
        return span

    def _highest(self, plan: TablePlan) -> int | None:
        query = sql.SQL("SELECT max({}) FROM {}").format(
            sql.Identifier(plan.key[0]), _ident(plan.schema.name)
        )
        row = self._conn.execute(query).fetchone()
        return int(row[0]) if row is not None and row[0] is not None else None

    def watermark(self, body: str) -> None:
        self._conn.execute("SELECT pg_logical_emit_message(true, %s, %s)", (PREFIX, body))

    def read_chunk(
        self,
        plan: TablePlan,
        after: TextKey | None,
        upto: TextKey | None,
        predicate: str | None,
    ) -> ChunkRows:
        layout, binary = self._layout(plan)
        if not self.binary_chunks:
            binary = None
        query = sql.SQL("COPY (SELECT {} FROM {} WHERE {} ORDER BY {}) TO STDOUT{}").format(
            sql.SQL(", ").join(map(sql.Identifier, layout.columns)),
            _ident(plan.schema.name),
            _where(plan, after, upto, predicate, literal=True),
            _order(plan),
            sql.SQL(" (FORMAT binary)" if binary is not None else ""),
        )
        statement = query.as_bytes(self._conn)
        if binary is not None:
            data, ends = self._settled(lambda: self._copy_rows(statement))
            chunk = SnapshotChunk(
                plan.schema, layout.columns, data, len(ends), binary.decode, binary.key, ends=ends
            )
            tail = data[ends[-2] if len(ends) > 1 else 0 :]
            return ChunkRows([], binary.key_text(tail) if ends else None, chunk)
        data = self._settled(lambda: self._copy_out(statement))
        rows = data.count(b"\n")
        chunk = self._chunk(plan, layout, data, rows)
        start = data.rfind(b"\n", 0, len(data) - 1) + 1
        last = layout.key_text(data[start:-1]) if rows else None
        return ChunkRows([], last, chunk)

    def _layout(self, plan: TablePlan) -> tuple[copy_lines.Layout, copy_binary.BinaryLayout | None]:
        """How the plan's chunks read as text, and as binary (None: a column of a type
        :mod:`.copy_binary` does not decode, or values re-encoded, e.g. bytea as base64); from
        one catalogue read per plan."""
        cached = self._layouts.get(plan.schema.name)
        if cached is None or cached[0] is not plan:
            names = [c.name for c in plan.schema.columns]
            order = tuple([*plan.key, *(n for n in names if n not in plan.key)])
            oids = self._oids(plan.schema.name)
            wire = tuple(oids.get(n, 25) for n in order)
            mappings = [self._types.mapping(oid) for oid in wire]
            exact = self.config.binary_handling_mode == "bytes" or not any(
                m.base_oid == BYTEA for m in mappings
            )
            convert = tuple(m.convert for m in mappings)
            layout = copy_lines.Layout(order, convert, len(plan.key), exact)
            binary = None
            if exact and copy_binary.BinaryLayout.supports(wire):
                binary = copy_binary.BinaryLayout(order, wire, convert, len(plan.key))
            cached = self._layouts[plan.schema.name] = (plan, layout, binary)
        return cached[1], cached[2]

    def _start_copy(self, statement: bytes) -> pq.abc.PGconn:
        """Send a ``COPY ... TO STDOUT`` and wait until its data flows; the libpq connection."""
        pgconn = self._conn.pgconn
        pgconn.send_query(statement)
        self._await(pgconn)
        result = pgconn.get_result()
        if result is None or result.status != pq.ExecStatus.COPY_OUT:
            self._finish(pgconn, result)
            raise SnapshotError("COPY did not start")  # _finish raised the server's error
        return pgconn

    def _copy_out(self, statement: bytes) -> bytes:
        """Run a ``COPY ... TO STDOUT`` and return its data.

        Straight on libpq: psycopg's ``Copy`` iterator costs about 1 µs of Python per row (a
        generator and a wait per message); this loop about 0.4 µs (measured on 500k rows).
        """
        pgconn = self._start_copy(statement)
        buf = bytearray()
        get, sock = pgconn.get_copy_data, pgconn.socket
        while True:
            n, data = get(1)
            if n > 0:
                buf += data
            elif n == 0:
                select.select([sock], [], [])
                pgconn.consume_input()
            else:
                break
        self._finish(pgconn, None)
        return bytes(buf)

    def _copy_rows(self, statement: bytes) -> tuple[bytes, list[int]]:
        """Run a binary ``COPY ... TO STDOUT``: its rows without header and trailer, and where
        each row ends (libpq hands over one row per call; noting its end costs ~50 ns)."""
        pgconn = self._start_copy(statement)
        buf = bytearray()
        ends: list[int] = []
        get, sock, note = pgconn.get_copy_data, pgconn.socket, ends.append
        while True:  # the first message: the header, with the first row or the trailer
            n, data = get(1)
            if n > 0:
                first = bytes(data)
                rest = first[copybinary.header_length(first) :]
                if rest and rest != copybinary.TRAILER:
                    buf += rest
                    note(len(buf))
                break
            if n < 0:
                break
            select.select([sock], [], [])
            pgconn.consume_input()
        while n >= 0:  # n < 0: the COPY ended
            n, data = get(1)
            if n > 0:
                buf += data
                note(len(buf))
            elif n == 0:
                select.select([sock], [], [])
                pgconn.consume_input()
        self._finish(pgconn, None)
        # The trailer is a message of its own: two bytes no row can be (a row starts with
        # its field count, never -1).
        if (
            ends
            and ends[-1] - (ends[-2] if len(ends) > 1 else 0) == 2
            and (buf[-2:] == copybinary.TRAILER)
        ):
            ends.pop()
            del buf[-2:]
        return bytes(buf), ends

    @staticmethod
    def _await(pgconn: pq.abc.PGconn) -> None:
        pgconn.consume_input()
        while pgconn.is_busy():
            select.select([pgconn.socket], [], [])
            pgconn.consume_input()

    @staticmethod
    def _finish(pgconn: pq.abc.PGconn, result: pq.abc.PGresult | None) -> None:
        """Consume the remaining results; raise the first error among them."""
        error: psycopg.Error | None = None
        while True:
            if result is not None and result.status == pq.ExecStatus.FATAL_ERROR:
                error = error or psycopg.errors.error_from_result(result)
            PostgresChunkReader._await(pgconn)
            result = pgconn.get_result()
            if result is None:
                break
        if error is not None:
            raise error

    def _settled(self, run: Callable[[], T]) -> T:
        """``run()`` on a snapshot no transaction was half-way through committing.

        A transaction's commit record is written before it becomes visible; one that committed
        just before the low watermark could still be invisible to a snapshot taken right
        after it, and its change would then be in neither the chunk nor the window. Such a
        transaction shows in the snapshot's in-progress list with its commit already recorded
        (``pg_xact_status``): take the snapshot again until there is none.
        """
        for _ in range(_SETTLE_TRIES):
            with self._conn.transaction():
                self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                finishing = self._conn.execute(_FINISHING).fetchone()
                if finishing is None or not finishing[0]:
                    return run()
            time.sleep(0.002)
        raise SnapshotError("transactions kept finishing while taking a chunk snapshot")

    def scan(self, plan: TablePlan, predicate: str | None, size: int) -> Iterator[SnapshotChunk]:
        """The whole table as COPY text, ``size`` lines a chunk, from one REPEATABLE READ
        transaction (a consistent copy in bounded memory, invariant 6, whatever the size).

        The COPY stays open between chunks; a scan abandoned half-way (cancel, stop, a failed
        write) drops the connection, which ends the query at once, and opens a new one."""
        layout, _ = self._layout(plan)
        query = sql.SQL("COPY (SELECT {} FROM {}{}) TO STDOUT").format(
            sql.SQL(", ").join(map(sql.Identifier, layout.columns)),
            _ident(plan.schema.name),
            sql.SQL(" WHERE ({})").format(sql.SQL(predicate)) if predicate else sql.SQL(""),
        )
        statement = query.as_bytes(self._conn)
        finished = False
        try:
            self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            for data, rows in self._copy_lines(statement, size):
                yield self._chunk(plan, layout, data, rows)
            self._conn.execute("COMMIT")
            finished = True
        finally:
            if not finished:
                self._reconnect()

    def _copy_lines(self, statement: bytes, size: int) -> Iterator[tuple[bytes, int]]:
        """A ``COPY ... TO STDOUT``'s data, ``size`` lines at a time (see :meth:`_copy_out`)."""
        pgconn = self._start_copy(statement)
        buf = bytearray()
        rows = 0
        get, sock = pgconn.get_copy_data, pgconn.socket
        while True:
            n, data = get(1)
            if n > 0:
                buf += data
                rows += 1
                if rows == size:
                    yield bytes(buf), rows
                    buf.clear()
                    rows = 0
            elif n == 0:
                select.select([sock], [], [])
                pgconn.consume_input()
            else:
                break
        self._finish(pgconn, None)
        if rows:
            yield bytes(buf), rows

    def _chunk(
        self, plan: TablePlan, layout: copy_lines.Layout, data: bytes, rows: int
    ) -> SnapshotChunk:
        return SnapshotChunk(
            plan.schema,
            layout.columns,
            data,
            rows,
            layout.decode,
            layout.key,
            exact=layout.exact,
            fields=layout.fields,
        )

    def _reconnect(self) -> None:
        self.close()
        with contextlib.suppress(Exception):  # unreachable: the next call fails and is retried
            self._conn = connection.connect_sql(self.config)
            self._types = TypeMap(
                partial(catalog.pg_types, self._conn), self.config.binary_handling_mode
            )

    def _oids(self, table: str) -> dict[str, int]:
        return dict(
            self._conn.execute(
                "SELECT attname::text, atttypid::int8 FROM pg_attribute"
                " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                (_ident(table).as_string(self._conn),),
            ).fetchall()
        )


def _ident(table: str) -> sql.Identifier:
    schema_name, name = split_table(table)
    return sql.Identifier(schema_name, name)


def _key_text(plan: TablePlan) -> sql.Composable:
    # Aliased: an output column named like a key column would make ORDER BY sort by the text
    # (ORDER BY prefers output column names), and Postgres sort and scan the whole table.
    return sql.SQL(", ").join(
        sql.SQL("{}::text AS {}").format(sql.Identifier(k), sql.Identifier(f"_tf_key_{i}"))
        for i, k in enumerate(plan.key)
    )


def _order(plan: TablePlan) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(k) for k in plan.key)


def _key_row(plan: TablePlan) -> sql.Composable:
    return sql.SQL("({})").format(_order(plan))


def _bound(plan: TablePlan, values: TextKey | None = None) -> sql.Composable:
    """Text bounds cast back to each key column's type: comparison in the column's own order.

    Placeholders, or the ``values`` as literals (for statements sent without parameters)."""
    return sql.SQL("({})").format(
        sql.SQL(", ").join(
            sql.SQL("CAST({} AS {})").format(
                sql.Placeholder() if values is None else sql.Literal(values[i]),
                sql.SQL(_type_of(plan, k)),
            )
            for i, k in enumerate(plan.key)
        )
    )


def _type_of(plan: TablePlan, column: str) -> str:
    col = plan.schema.column(column)
    assert col is not None
    return col.type


def _where(
    plan: TablePlan,
    after: TextKey | None,
    upto: TextKey | None,
    predicate: str | None,
    *,
    literal: bool = False,
) -> sql.Composable:
    """The chunk's condition; bounds as placeholders (see :func:`_params`), or as literals."""
    parts: list[sql.Composable] = [sql.SQL("true")]
    if after is not None:
        bound = _bound(plan, after if literal else None)
        parts.append(sql.SQL("{} > {}").format(_key_row(plan), bound))
    if upto is not None:
        bound = _bound(plan, upto if literal else None)
        parts.append(sql.SQL("{} <= {}").format(_key_row(plan), bound))
    if predicate:
        # With parameters, a literal % must not read as a placeholder.
        text = predicate if literal else predicate.replace("%", "%%")
        parts.append(sql.SQL("({})").format(sql.SQL(text)))
    return sql.SQL(" AND ").join(parts)


def _params(after: TextKey | None, upto: TextKey | None) -> list[str]:
    return [*(after or ()), *(upto or ())]
