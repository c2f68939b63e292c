"""Chunk reads of MySQL/MariaDB tables for the snapshot engine (:mod:`tideflow.engine.snapshot`).

Each :class:`MySQLChunkReader` holds one plain autocommit connection (never the binlog
connection) and is used by one thread. Chunks are read by keyset pagination
(``WHERE key > last [AND key <= upto] [AND (filter)] ORDER BY key``) in a READ ONLY
transaction, so a filter calling a function that writes fails. Watermarks are rows of the
signal table (:mod:`.signal`), each written in its own committed transaction.

Why the window is sound here: the binlog is written in commit order and a transaction becomes
visible only after its binlog write, so a change the chunk's read cannot see was committed
after the low mark's commit returned — its binlog event follows the low mark. A change the read
did see committed before the read began, so its event precedes the high mark.

Values go through the same :func:`~.types.converter` as binlog values, after the text
protocol's values are put in the form the binlog decoder produces (zero dates, BIT, FLOAT),
so a chunk row and a streamed change of the same row carry equal keys and values. The session
time zone is UTC: TIMESTAMP values in the binlog are UTC.
"""

from __future__ import annotations

import contextlib
import re
import struct
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pymysql
import pymysql.cursors

from tideflow.connectors.sources.mysql import catalog, signal
from tideflow.connectors.sources.mysql.config import MySQLSourceConfig
from tideflow.connectors.sources.mysql.selection import column_filter
from tideflow.connectors.sources.mysql.types import base_type, converter
from tideflow.engine.snapshot import filters
from tideflow.engine.snapshot.reader import ChunkRows, SnapshotError, TablePlan, TextKey
from tideflow.events import TableSchema

Convert = Callable[[Any], Any] | None

_INTS = {"tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year", "bool", "boolean"}
_UNORDERED = {"enum", "set"}
_BINARY = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"}
_ZERO_TIMESTAMP = datetime(1970, 1, 1)  # what the binlog carries for 0000-00-00 00:00:00
_FLOAT = struct.Struct("<f")


class MySQLChunkReader:
    """Implements :class:`tideflow.engine.snapshot.reader.ChunkReader` for one thread."""

    def __init__(self, config: MySQLSourceConfig) -> None:
        self.config = config
        self._conn = _connect(config)
        self._keep = column_filter(config)
        self._signal_db = signal.database(config)
        self._signal_checked = False
        self._conv: dict[str, tuple[TablePlan, list[Convert]]] = {}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.close()

    def plan(self, table: str, surrogate_key: str | None) -> TablePlan:
        db, sep, name = table.partition(".")
        if not sep or not db or not name:
            raise SnapshotError(f"table {table} must be named database.table")
        if db == self._signal_db and name == signal.TABLE:
            raise SnapshotError(f"{table} is the snapshot signal table, not a data table")
        self._check_signal()
        shape = catalog.load_schemas(self._conn, [(db, name)], self.config.binary_handling_mode)
        found = shape.get((db, name))
        if found is None:
            raise SnapshotError(f"table {table} does not exist")
        keep = self._keep
        columns = tuple(c for c in found.columns if c.key or keep is None or keep(db, name, c.name))
        schema = TableSchema(db, name, columns, found.key)
        key = found.key
        if surrogate_key:
            key = tuple(k.strip() for k in surrogate_key.split(",") if k.strip())
            missing = [k for k in key if schema.column(k) is None]
            if missing:
                raise SnapshotError(f"surrogate key column(s) {missing} not in table {table}")
        for k in key:
            col = schema.column(k)
            if col is not None and base_type(col.type) in _UNORDERED:
                # Compared with a text bound as a string, ordered by the index as a number.
                raise SnapshotError(
                    f"key column {k} of {table} is {col.type}, which chunks cannot be ordered "
                    "by: give a surrogate_key of another type or request a blocking snapshot"
                )
        rows = catalog.query(
            self._conn,
            "SELECT COALESCE(TABLE_ROWS, 0) FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
            (db, name),
        )
        return TablePlan(schema, key, int(rows[0][0]) if rows else 0)

    def _check_signal(self) -> None:
        if not self._signal_checked:
            signal.ensure(self._conn, self.config)
            self._signal_checked = True

    def check_filter(self, table: str, predicate: str) -> None:
        try:
            text = filters.check_mysql(predicate)
        except filters.FilterError as exc:
            raise SnapshotError(str(exc)) from exc
        try:
            self._read_only(
                lambda cur: cur.execute(f"EXPLAIN SELECT 1 FROM {_ident(table)} WHERE ({text})")
            )
        except pymysql.err.MySQLError as exc:
            raise SnapshotError(f"filter does not compile against {table}: {exc.args[-1]}") from exc

    def boundary(
        self, plan: TablePlan, after: TextKey | None, size: int, predicate: str | None
    ) -> TextKey | None:
        where, params = _where(plan, after, None, predicate)
        query = (
            f"SELECT {_key_text(plan)} FROM {_ident(plan.schema.name)} WHERE {where} "
            f"ORDER BY {_order(plan)} LIMIT 1 OFFSET {int(size) - 1}"
        )
        rows = catalog.query(self._conn, query, params)
        return tuple(str(v) for v in rows[0]) if rows else None

    def watermark(self, body: str) -> None:
        if self._signal_db is None:
            raise SnapshotError("no signal table database is configured")
        signal.write(self._conn, self._signal_db, body)

    def read_chunk(
        self,
        plan: TablePlan,
        after: TextKey | None,
        upto: TextKey | None,
        predicate: str | None,
    ) -> ChunkRows:
        where, params = _where(plan, after, upto, predicate)
        query = (
            f"SELECT {_key_text(plan)}, {_select(plan)} FROM {_ident(plan.schema.name)} "
            f"WHERE {where} ORDER BY {_order(plan)}"
        )

        def run(cur: Any) -> list[Any]:
            cur.execute(query, params)
            return list(cur.fetchall())

        raw = self._read_only(run)
        n = len(plan.key)
        rows = [self._convert(plan, r[n:]) for r in raw]
        return ChunkRows(rows, tuple(str(v) for v in raw[-1][:n]) if raw else None)

    def _read_only(self, work: Callable[[Any], Any]) -> Any:
        with self._conn.cursor() as cur:
            cur.execute("START TRANSACTION READ ONLY")
            try:
                return work(cur)
            finally:
                cur.execute("COMMIT")

    def scan(
        self, plan: TablePlan, predicate: str | None, size: int
    ) -> Iterator[list[dict[str, Any]]]:
        where = f" WHERE ({_percent(predicate)})" if predicate else ""
        query = f"SELECT {_select(plan)} FROM {_ident(plan.schema.name)}{where}"
        # One consistent snapshot, streamed row by row from the server: a point-in-time copy in
        # bounded memory (invariant 6), whatever the table size.
        cur = self._conn.cursor(pymysql.cursors.SSCursor)
        finished = False
        try:
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            cur.execute(query, ())
            while batch := cur.fetchmany(size):
                yield [self._convert(plan, r) for r in batch]
            finished = True
        finally:
            if finished:
                cur.close()
                catalog.query(self._conn, "COMMIT")
            else:
                # Abandoned (cancel, stop) or failed: the rest of an unbuffered result can only
                # be read to its end; dropping the connection ends the query at once. pymysql
                # would still try to read it when the result is collected: tell it not to.
                result = getattr(cur, "_result", None)
                if result is not None:
                    result.unbuffered_active = False
                self._reconnect()

    def _reconnect(self) -> None:
        self.close()
        with contextlib.suppress(Exception):  # unreachable: the next call fails and is retried
            self._conn = _connect(self.config)

    def _convert(self, plan: TablePlan, values: tuple[Any, ...]) -> dict[str, Any]:
        convs = self._converters(plan)
        return {
            c.name: None if v is None else conv(v) if conv is not None else v
            for c, conv, v in zip(plan.schema.columns, convs, values, strict=True)
        }

    def _converters(self, plan: TablePlan) -> list[Convert]:
        cached = self._conv.get(plan.schema.name)
        if cached is None or cached[0] is not plan:
            mode = self.config.binary_handling_mode
            convs = [value_converter(c.type, mode) for c in plan.schema.columns]
            cached = self._conv[plan.schema.name] = (plan, convs)
        return cached[1]


def _connect(config: MySQLSourceConfig) -> pymysql.connections.Connection[Any]:
    conn = catalog.connect(config)
    try:
        catalog.query(conn, "SET time_zone = '+00:00'")  # binlog TIMESTAMP values are UTC
    except BaseException:
        conn.close()
        raise
    return conn


def value_converter(column_type: str, mode: Any = "bytes") -> Convert:
    """Text-protocol value → the event value the binlog path produces for the same data."""
    base = base_type(column_type)
    if base in ("uuid", "inet4", "inet6"):
        return None  # printed by the server exactly as the binlog path prints them
    after = converter(column_type, mode)
    before: Convert = None
    if base == "float":
        # The binlog carries the 4-byte float; the text protocol its shortest decimal form.
        before = _float32
    elif base in ("date", "datetime"):
        before = _no_zero_date
    elif base == "timestamp":
        before = _zero_timestamp
    elif base == "bit":
        before = _bits(column_type)
    if before is None:
        return after
    if after is None:
        return before
    first, then = before, after
    return lambda v: None if (w := first(v)) is None else then(w)


def _float32(v: Any) -> Any:
    return _FLOAT.unpack(_FLOAT.pack(v))[0] if isinstance(v, float) else v


def _no_zero_date(v: Any) -> Any:
    return None if isinstance(v, str) else v  # pymysql leaves invalid (zero) dates as text


def _zero_timestamp(v: Any) -> Any:
    return _ZERO_TIMESTAMP if isinstance(v, str) else v


def _bits(column_type: str) -> Convert:
    """BIT(n) arrives as bytes; the binlog decoder gives n binary digits."""
    m = re.search(r"\((\d+)\)", column_type)
    width = int(m.group(1)) if m else 1

    def bits(v: Any) -> Any:
        return format(int.from_bytes(v, "big"), f"0{width}b") if isinstance(v, bytes) else v

    return bits


def _q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _ident(table: str) -> str:
    db, _, name = table.partition(".")
    return f"{_q(db)}.{_q(name)}"


def _select(plan: TablePlan) -> str:
    return ", ".join(_q(c.name) for c in plan.schema.columns)


def _order(plan: TablePlan) -> str:
    return ", ".join(_q(k) for k in plan.key)


def _key_form(plan: TablePlan, column: str) -> tuple[str, str]:
    """(how a key column is selected as text, how a text bound is cast back for comparison)."""
    col = plan.schema.column(column)
    ctype = col.type.lower() if col is not None else ""
    base, q = base_type(ctype), _q(column)
    if base in _INTS or base == "bit":
        cast = "UNSIGNED" if "unsigned" in ctype or base == "bit" else "SIGNED"
        return f"CAST({q} AS {'UNSIGNED' if base == 'bit' else 'CHAR'})", f"CAST(%s AS {cast})"
    if base in ("decimal", "numeric", "dec", "fixed"):
        return f"CAST({q} AS CHAR)", "CAST(%s AS DECIMAL(65,30))"
    if base in _BINARY:
        return f"HEX({q})", "UNHEX(%s)"
    return f"CAST({q} AS CHAR)", "%s"


def _key_text(plan: TablePlan) -> str:
    return ", ".join(_key_form(plan, k)[0] for k in plan.key)


def _compare(plan: TablePlan, bound: TextKey, strict: str, last: str) -> tuple[str, list[str]]:
    """Row comparison ``(k1, k2, ..) <op> (b1, b2, ..)`` written so an index range applies:
    ``k1 >= b1 AND (k1 > b1 OR (k1 = b1 AND (k2 > b2 OR ...)))`` (``last`` for the final key)."""
    keys = plan.key
    params: list[str] = []
    expr = ""
    for i in reversed(range(len(keys))):
        q, cast = _q(keys[i]), _key_form(plan, keys[i])[1]
        if i == len(keys) - 1:
            expr = f"{q} {last} {cast}"
            params = [bound[i]]
        else:
            expr = f"({q} {strict} {cast} OR ({q} = {cast} AND {expr}))"
            params = [bound[i], bound[i], *params]
    if len(keys) > 1:
        q, cast = _q(keys[0]), _key_form(plan, keys[0])[1]
        expr = f"{q} {strict}= {cast} AND {expr}"
        params = [bound[0], *params]
    return expr, params


def _where(
    plan: TablePlan, after: TextKey | None, upto: TextKey | None, predicate: str | None
) -> tuple[str, list[str]]:
    parts, params = ["TRUE"], []
    if after is not None:
        expr, p = _compare(plan, after, ">", ">")
        parts.append(expr)
        params += p
    if upto is not None:
        expr, p = _compare(plan, upto, "<", "<=")
        parts.append(expr)
        params += p
    if predicate:
        parts.append(f"({_percent(predicate)})")
    return " AND ".join(parts), params


def _percent(predicate: str) -> str:
    # Queries go with parameters: a literal % must not read as a placeholder.
    return predicate.replace("%", "%%")
