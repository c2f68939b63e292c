"""The ``mysql`` destination (MySQL and MariaDB): batches applied as upserts and deletes.

Each batch is one destination transaction (all or nothing), so a replayed batch converges to
the same table (invariant 2). Per batch and table: reduce the events per key
(:mod:`tideflow.engine.reduce`, invariant 3), then apply deletes with ``DELETE … WHERE key IN``
and the rest with multi-row ``INSERT … ON DUPLICATE KEY UPDATE``. Columns a change did not
carry (:data:`~tideflow.events.UNCHANGED`) are left out of both the insert and the update, so
they keep their stored value. Tables without a key, and ``insert.mode=insert``, append rows.
Tables and new columns are made before the data transaction (see :mod:`.tables`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import pymysql

from tideflow.connectors.base import Destination, Problem
from tideflow.connectors.destinations.mysql.config import MySQLDestinationConfig
from tideflow.connectors.destinations.mysql.tables import Conn, DestTable, Tables, quote
from tideflow.engine.reduce import Change, reduce
from tideflow.errors import TerminalError, TideflowError, TransientError
from tideflow.events import UNCHANGED, Batch, ChangeEvent, Op

log = logging.getLogger(__name__)

_TERMINAL = {1044, 1045, 1049, 1142, 1143, 1227, 1370, 1698}
_CHUNK = 500


class MySQLDestination(Destination[MySQLDestinationConfig]):
    connector = "mysql"

    def __init__(self, config: MySQLDestinationConfig, *, name: str) -> None:
        super().__init__(config, name=name)
        self._conn: Conn | None = None
        self._tables: Tables | None = None

    def _where(self) -> str:
        c = self.config
        return f"destination MySQL {c.hostname}:{c.port}/{c.database}"

    def _connect(self) -> Conn:
        c = self.config
        try:
            conn = pymysql.connect(
                host=c.hostname,
                port=c.port,
                user=c.username,
                password=c.password,
                charset="utf8mb4",
                connect_timeout=10,
                autocommit=True,
            )
            with conn.cursor() as cur:
                # Values are written as given: UTC for timestamptz, no server-side shifts.
                cur.execute("SET time_zone = '+00:00'")
                cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote(c.database)}")
            return conn
        except pymysql.err.MySQLError as exc:
            raise self._classify(exc) from exc

    def preflight(self) -> list[Problem]:
        try:
            conn = self._connect()
        except TideflowError as exc:
            return [Problem("connect", exc.message)]
        try:
            with conn.cursor() as cur:
                cur.execute(
                    f"CREATE TABLE IF NOT EXISTS {quote(self.config.database)}."
                    "`tideflow_preflight` (id INT PRIMARY KEY)"
                )
                cur.execute(f"DROP TABLE {quote(self.config.database)}.`tideflow_preflight`")
        except pymysql.err.MySQLError as exc:
            return [
                Problem(
                    "privileges",
                    f"user {self.config.username} cannot create tables in {self.config.database} "
                    f"({exc.args[-1]}): GRANT CREATE, ALTER, INSERT, UPDATE, DELETE, SELECT ON "
                    f"{self.config.database}.* TO {self.config.username}",
                )
            ]
        finally:
            conn.close()
        return []

    def open(self) -> None:
        self._conn = self._connect()
        self._tables = Tables(self._conn, self.config)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                log.debug("closing the destination connection failed", exc_info=True)

    def write(self, batch: Batch) -> None:
        if not batch.events:
            return
        conn, tables = self._conn, self._tables
        if conn is None or tables is None:
            raise TransientError(f"{self._where()}: not connected")
        try:
            plan = [(tc, tables.ensure(tc.table)) for tc in reduce(batch.events, tables.key_of)]
            conn.begin()
            try:
                with conn.cursor() as cur:
                    for tc, dest in plan:
                        if tc.truncate is not None:
                            # DELETE, not TRUNCATE: TRUNCATE would commit the transaction.
                            cur.execute(f"DELETE FROM {dest.name}")
                        if tc.key:
                            self._apply(cur, dest, tc.changes.values())
                        else:
                            self._append(cur, dest, tc.log)
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
        except pymysql.err.MySQLError as exc:
            raise self._classify(exc) from exc

    def _apply(self, cur: Any, dest: DestTable, changes: Iterable[Change]) -> None:
        deletes: list[tuple[Any, ...]] = []
        upserts: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for ch in changes:
            if ch.kind == "delete":
                if self.config.delete_enabled:
                    deletes.append(tuple(_value(ch.row.get(k)) for k in dest.key))
                continue
            cols = tuple(n for n, v in ch.row.items() if v is not UNCHANGED and n in dest.columns)
            upserts.setdefault(cols, []).append(tuple(_value(ch.row[n]) for n in cols))
        if deletes:
            self._delete(cur, dest, deletes)
        for cols, rows in upserts.items():
            updates = [c for c in cols if c not in dest.key] or list(cols[:1])
            suffix = " ON DUPLICATE KEY UPDATE " + ", ".join(
                f"{quote(c)} = VALUES({quote(c)})" for c in updates
            )
            self._insert(cur, dest, cols, rows, suffix)

    def _delete(self, cur: Any, dest: DestTable, keys: list[tuple[Any, ...]]) -> None:
        target = ", ".join(quote(k) for k in dest.key)
        one = "(" + ", ".join(["%s"] * len(dest.key)) + ")"
        for i in range(0, len(keys), _CHUNK):
            chunk = keys[i : i + _CHUNK]
            cur.execute(
                f"DELETE FROM {dest.name} WHERE ({target}) IN ({', '.join([one] * len(chunk))})",
                [v for key in chunk for v in key],
            )

    def _append(self, cur: Any, dest: DestTable, events: Sequence[ChangeEvent]) -> None:
        groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for ev in events:
            if ev.op is Op.DELETE or ev.after is None:
                continue  # append-only: a delete cannot be applied without a key
            cols = tuple(n for n, v in ev.after.items() if v is not UNCHANGED and n in dest.columns)
            groups.setdefault(cols, []).append(tuple(_value(ev.after[n]) for n in cols))
        for cols, rows in groups.items():
            self._insert(cur, dest, cols, rows, "")

    def _insert(
        self,
        cur: Any,
        dest: DestTable,
        cols: tuple[str, ...],
        rows: list[tuple[Any, ...]],
        suffix: str,
    ) -> None:
        # executemany rewrites this into multi-row INSERTs of up to ~1 MB each.
        sql = (
            f"INSERT INTO {dest.name} ({', '.join(quote(c) for c in cols)}) "
            f"VALUES ({', '.join(['%s'] * len(cols))}){suffix}"
        )
        for i in range(0, len(rows), self.config.batch_rows):
            cur.executemany(sql, rows[i : i + self.config.batch_rows])

    def _classify(self, exc: pymysql.err.MySQLError) -> TideflowError:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        detail = exc.args[-1] if exc.args else str(exc)
        message = f"{self._where()}: {detail}"
        if code in _TERMINAL:
            return TerminalError(message, code="destination_access")
        if isinstance(exc, (pymysql.err.DataError, pymysql.err.IntegrityError)):
            return TerminalError(message, code="destination_data")
        if isinstance(exc, pymysql.err.ProgrammingError):
            return TerminalError(message, code="destination_sql")
        return TransientError(message, code="destination_unavailable")


def _value(v: Any) -> Any:
    if isinstance(v, datetime) and v.tzinfo is not None:
        return v.astimezone(UTC).replace(tzinfo=None)
    if isinstance(v, (list, dict)):
        return json.dumps(v, default=str)
    return v
