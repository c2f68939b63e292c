"""The ``mysql`` and ``mariadb`` sources: one binlog reader per source.

Data flow: :mod:`.stream` (start point, purge checks, the ``mysql-replication`` reader) →
:class:`MySQLSource` (transactions, positions, DDL via :mod:`.tracker`, rows via
:mod:`.decoder`) → the runtime. :mod:`.preflight` checks a configuration before a start.

Positions (see :mod:`.position`) only come out in :class:`~tideflow.events.Commit` records at
transaction boundaries, so a checkpoint never points into a transaction. The binlog has no
upstream acknowledgement: the server purges binlogs by age whatever readers do, so ``ack``
only records progress, and a resume point that was purged meanwhile is reported as a terminal
error (invariant 5).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import orjson
import pymysql
from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    FormatDescriptionEvent,
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.row_event import (
    DeleteRowsEvent,
    TableMapEvent,
    UpdateRowsEvent,
    WriteRowsEvent,
)

from tideflow.connectors.base import Problem, Source
from tideflow.connectors.sources.mysql import catalog, ddl, preflight, rowcodec, signal, stream
from tideflow.connectors.sources.mysql.config import MySQLSourceConfig
from tideflow.connectors.sources.mysql.decoder import TableDecoder, build, schema_from_table_map
from tideflow.connectors.sources.mysql.position import BinlogPosition, from_dict
from tideflow.connectors.sources.mysql.schema_history import SchemaHistory
from tideflow.connectors.sources.mysql.selection import Selection, column_filter
from tideflow.connectors.sources.mysql.snapshot import MySQLChunkReader
from tideflow.connectors.sources.mysql.tracker import SchemaTracker
from tideflow.engine.snapshot.coordinator import Readers
from tideflow.errors import TerminalError, TideflowError
from tideflow.events import ChangeEvent, Commit, Message, Op, Record, TableSchema

log = logging.getLogger(__name__)

SIGNAL_TABLE = signal.TABLE
HEARTBEAT_TABLE = "tideflow_heartbeat"
_TXN_END_QUERIES = ("COMMIT", "ROLLBACK")
_MARIADB_GTID_STANDALONE = 0x01  # FL_STANDALONE: no Xid/COMMIT follows (DDL)


# A poll that has seen a commit returns once it has run this long (see ``poll``).
HAND_OVER_AFTER_S = 0.02
_MISSING: Any = object()


def _metadata(col: Any) -> tuple[Any, ...]:
    """What a row-image reader depends on in a table-map column."""
    return (
        col.type,
        getattr(col, "unsigned", None),
        getattr(col, "character_set_name", None),
        getattr(col, "length_size", None),
        getattr(col, "max_length", None),
        getattr(col, "precision", None),
        getattr(col, "decimals", None),
        getattr(col, "fsp", None),
        getattr(col, "size", None),
        getattr(col, "bits", None),
        tuple(getattr(col, "enum_values", None) or ()),
        tuple(getattr(col, "set_values", None) or ()),
    )


def default_state_dir(name: str) -> Path:
    from tideflow.settings import get_settings

    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "source"
    return get_settings().data_dir / "sources" / safe


class MySQLSource(Source[MySQLSourceConfig]):
    """Reads committed row changes of the configured tables from the server's binlog.

    Follows the :class:`~tideflow.connectors.base.Source` lifecycle; every method but
    ``drop`` runs on the runtime thread that owns the instance. ``state_dir`` holds the schema
    history (see :mod:`.schema_history`); the runtime passes its own directory for the source.
    """

    connector = "mysql"

    def __init__(
        self, config: MySQLSourceConfig, *, name: str, state_dir: Path | None = None
    ) -> None:
        super().__init__(config, name=name)
        self.server_id = config.effective_server_id()
        self.state_dir = state_dir if state_dir is not None else default_state_dir(name)
        self._keep = column_filter(config)
        self._signal_db = signal.database(config)  # its inserts are watermarks, not data
        self._ctl: pymysql.connections.Connection[Any] | None = None
        self._reader: BinLogStreamReader | None = None
        self._history: SchemaHistory | None = None
        self._tracker: SchemaTracker | None = None
        self._selection: Selection | None = None
        self._gtids: stream.GtidState | None = None
        self._pending: deque[Record] = deque()
        self._decoders: dict[int, TableDecoder | None] = {}
        self._decoder_cache: dict[tuple[Any, ...], TableDecoder] = {}
        self._images_cache: dict[tuple[Any, ...], rowcodec.Image | None] = {}
        self._file = ""
        self._in_txn = False
        self._txn_captured = False
        self._boundary: BinlogPosition | None = None  # last transaction boundary seen
        self._emitted: BinlogPosition | None = None  # last Commit position handed out
        self._acked: BinlogPosition | None = None
        self._next_heartbeat = 0.0
        self._committed = False  # a captured transaction ended during this poll

    def preflight(self) -> list[Problem]:
        return preflight.run(self.config, self.server_id)

    def open(self, position: dict[str, Any] | None) -> None:
        cfg = self.config
        self._selection = selection = Selection.of(cfg)
        start = from_dict(position) if position is not None else None
        self._ctl = ctl = catalog.connect(cfg)
        try:
            plan = stream.plan(ctl, cfg, start)
            self._history = SchemaHistory(
                self.state_dir / "schema_history.sqlite", cfg.binary_handling_mode
            )
            self._tracker = SchemaTracker(
                self._history,
                lambda keys: catalog.load_schemas(ctl, keys, cfg.binary_handling_mode),
                selection.captures,
                cfg.binary_handling_mode,
            )
            found = catalog.list_tables(ctl, selection.databases, selection.tables)
            self._tracker.start(plan.start, found)
            if cfg.heartbeat_enabled and cfg.heartbeat_schema:
                stream.create_heartbeat_table(ctl, cfg.heartbeat_schema, HEARTBEAT_TABLE)
        except pymysql.err.MySQLError as exc:
            raise catalog.map_error(exc, f"cannot start reading {catalog.describe(cfg)}") from exc
        extra = frozenset(s for s in (self._signal_db, cfg.heartbeat_schema) if s)
        self._reader = stream.open_reader(
            cfg, plan, self.server_id, selection.schemas | extra, name=self.name
        )
        self._gtids = plan.gtids
        self._file = plan.start.file
        self._boundary = self._emitted = plan.start
        log.info(
            "reading binlog from %s:%s%s",
            plan.start.file,
            plan.start.pos,
            f" (GTID {plan.start.gtid})" if plan.by_gtid else "",
            extra={"source": self.name},
        )

    def poll(self, timeout: float, max_records: int) -> Sequence[Record]:
        reader = self._reader
        if reader is None:
            raise TerminalError("poll() called before open()")
        now = time.monotonic()
        if now >= self._next_heartbeat:
            self._write_heartbeat(now)
        out: list[Record] = []
        pending = self._pending
        deadline = now + timeout
        # Transactions back to back never let the server send a heartbeat: hand over at the
        # first commit after a short while instead of at the deadline (latency).
        hand_over = now + min(timeout, HAND_OVER_AFTER_S)
        self._committed = False
        # invariant 6: at most max_records leave per call; the rest of a rows event waits in
        # ``pending`` (one binlog event's rows), the rest of the binlog in the socket.
        while len(out) < max_records:
            if pending:
                out.append(pending.popleft())
                continue
            if time.monotonic() >= deadline:
                break
            try:
                ev = reader.fetchone()
            except pymysql.err.MySQLError as exc:
                raise catalog.map_error(
                    exc, f"binlog stream of {catalog.describe(self.config)}"
                ) from exc
            if ev is None:
                break
            self._handle(ev)
            # A server heartbeat means we are caught up: hand over what we have now.
            if isinstance(ev, HeartbeatLogEvent) and (out or pending):
                break
            if self._committed and time.monotonic() >= hand_over:
                break
        self._heartbeat_commit(out, max_records)
        return out

    def ack(self, position: dict[str, Any]) -> None:
        """Record progress; the binlog has nothing to release upstream (see module doc).

        The position may be ahead of what this instance has delivered: after a reopen, the
        pipelines still write batches read by the previous instance (the reopen went back to
        the oldest durable checkpoint) and acknowledge those positions.
        """
        self._acked = from_dict(position)

    def close(self) -> None:
        reader, self._reader = self._reader, None
        ctl, self._ctl = self._ctl, None
        history, self._history = self._history, None
        for closer in (reader, ctl, history):
            if closer is not None:
                with contextlib.suppress(Exception):
                    closer.close()

    def tables(self) -> list[str]:
        """``database.table`` of every captured table (database include lists expanded)."""
        selection = Selection.of(self.config)
        conn = self._ctl or catalog.connect(self.config)
        try:
            found = catalog.list_tables(conn, selection.databases, selection.tables)
        except pymysql.err.MySQLError as exc:
            raise catalog.map_error(exc, "cannot list tables") from exc
        finally:
            if conn is not self._ctl:
                conn.close()
        return [f"{d}.{t}" for d, t in found if (d, t) != (self._signal_db, SIGNAL_TABLE)]

    def snapshot_readers(self) -> Readers:
        """Chunk readers for the snapshot engine, each with its own plain connection."""
        cfg = self.config
        return Readers(
            partial(MySQLChunkReader, cfg), cfg.snapshot_chunk_size, cfg.snapshot_parallelism
        )

    def _handle(self, ev: Any) -> None:
        # Ordered by frequency: rows events dominate a busy stream.
        if isinstance(ev, (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)):
            self._rows(ev)
        elif isinstance(ev, TableMapEvent):
            self._table_map(ev)
        elif isinstance(ev, XidEvent):
            self._end_txn(ev)
        elif isinstance(ev, MariadbGtidEvent):
            assert self._gtids is not None
            # MariaDB writes no BEGIN query: the GTID event opens the transaction, unless it
            # is standalone (DDL), whose single statement ends it.
            self._in_txn = not ev.flags & _MARIADB_GTID_STANDALONE
            self._gtids.begin_mariadb(ev.domain_id, ev.server_id, ev.gtid_seq_no)
        elif isinstance(ev, GtidEvent):
            assert self._gtids is not None
            self._gtids.begin_mysql(ev.gtid)
        elif isinstance(ev, QueryEvent):
            self._query(ev)
        elif isinstance(ev, HeartbeatLogEvent):
            if not self._in_txn and ev.packet.log_pos >= 4:
                self._file = ev.ident
                self._set_boundary(ev.packet.log_pos)
        elif isinstance(ev, RotateEvent):
            self._forget_table_ids()
            self._file = ev.next_binlog
            if ev.timestamp != 0 and not self._in_txn:  # a real rotation, not the stream start
                self._set_boundary(ev.position)
        elif isinstance(ev, FormatDescriptionEvent):  # the start of a binlog file
            self._forget_table_ids()

    def _forget_table_ids(self) -> None:
        """Drop table-id mappings at a binlog file boundary.

        Table ids only hold within one server run, and a new file may follow a restart that
        numbers tables afresh. ``mysql-replication`` forgets its ids only at a *timestamped*
        rotate, not at the fake one the server sends when a reader crosses into the file a
        restart began, so a rows event of an uncaptured table (whose table map it filtered
        out) would be taken for the captured table that had its id before the restart:
        wrong rows written to the destination, or a decode error. Every transaction carries
        its table maps again, so forgetting is always safe.
        """
        self._decoders.clear()
        if self._reader is not None:
            self._reader.table_map.clear()

    def _set_boundary(self, pos: int) -> None:
        assert self._gtids is not None
        self._boundary = BinlogPosition(self._file, pos, self._gtids.text())

    def _end_txn(self, ev: Any) -> None:
        assert self._gtids is not None
        self._in_txn = False
        self._gtids.commit()
        self._set_boundary(ev.packet.log_pos)
        if self._txn_captured:
            self._txn_captured = False
            assert self._boundary is not None
            self._pending.append(Commit(self._boundary.to_dict(), ev.timestamp * 1000))
            self._emitted = self._boundary
            self._committed = True

    def _heartbeat_commit(self, out: list[Record], max_records: int) -> None:
        """invariant 4: move the position past transactions that had nothing for us."""
        boundary, emitted = self._boundary, self._emitted
        if (
            not self.config.heartbeat_enabled
            or self._in_txn
            or self._pending
            or len(out) >= max_records
            or boundary is None
            or (emitted is not None and boundary.sort_key() <= emitted.sort_key())
        ):
            return
        out.append(Commit(boundary.to_dict(), int(time.time() * 1000), heartbeat=True))
        self._emitted = boundary

    def _query(self, ev: Any) -> None:
        sql = ev.query.strip()
        word = sql[:8].upper()
        if word.startswith("BEGIN"):
            self._in_txn = True
            return
        if word.startswith(_TXN_END_QUERIES) and not word.startswith("ROLLBACK TO"):
            self._end_txn(ev)
            return
        default_db = ev.schema.decode() if isinstance(ev.schema, bytes) else str(ev.schema)
        changes = ddl.parse(sql, default_db)
        if changes:
            assert self._tracker is not None
            at = BinlogPosition(self._file, ev.packet.log_pos)
            try:
                truncated = self._tracker.apply(at, changes)
            except pymysql.err.MySQLError as exc:
                raise catalog.map_error(exc, "cannot read table definitions") from exc
            self._decoder_cache.clear()
            self._images_cache.clear()
            ts = ev.timestamp * 1000
            for schema in truncated:
                self._pending.append(
                    ChangeEvent(Op.TRUNCATE, self._visible(schema), None, None, at.to_dict(), ts)
                )
                self._txn_captured = True
            if any(self._selection_has(c) for c in changes):
                self._txn_captured = True  # emit a Commit so the new shape's position is kept
        if not self._in_txn:  # DDL and other auto-committed statements end their transaction
            self._end_txn(ev)

    def _selection_has(self, change: ddl.Change) -> bool:
        assert self._selection is not None
        return self._selection.captures(change.db, change.table)

    def _visible(self, schema: TableSchema) -> TableSchema:
        if self._keep is None:
            return schema
        keep = self._keep
        cols = tuple(
            c for c in schema.columns if c.key or keep(schema.schema, schema.table, c.name)
        )
        return TableSchema(schema.schema, schema.table, cols, schema.key, schema.version)

    def _table_map(self, ev: Any) -> None:
        assert self._selection is not None and self._tracker is not None
        key = (ev.schema, ev.table)
        mode = self.config.binary_handling_mode
        if self._signal_db and key == (self._signal_db, SIGNAL_TABLE):
            signal = build(schema_from_table_map(*key, ev.columns, mode), ev.columns, mode, None)
            signal.captured = False
            self._decoders[ev.table_id] = signal
            return
        if not self._selection.captures(*key):
            self._decoders[ev.table_id] = None
            return
        names = [c.name for c in ev.columns]
        tracked = self._tracker.get(key)
        if (
            tracked is None
            or len(tracked.columns) != len(names)
            or (all(names) and names != [c.name for c in tracked.columns])
        ):
            schema = self._reconcile(ev, key, names)
        else:
            schema = tracked
        cache_key = (key, schema.version, tuple(names))
        dec = self._decoder_cache.get(cache_key)
        if dec is None:
            dec = self._decoder_cache[cache_key] = build(schema, ev.columns, mode, self._keep)
        # The fast decoder follows this table map's exact column metadata (a MODIFY may keep
        # names); compiled once per decoder and metadata, not per transaction.
        meta = (id(dec), *(_metadata(c) for c in ev.columns))
        image = self._images_cache.get(meta, _MISSING)
        if image is _MISSING:
            image = self._images_cache[meta] = rowcodec.compile_image(
                ev.columns, dec.index, dec.names, dec.convert
            )
        dec.image = image
        self._decoders[ev.table_id] = dec

    def _reconcile(self, ev: Any, key: tuple[str, str], names: list[str]) -> TableSchema:
        """The binlog's table map disagrees with the tracked shape: adopt a matching one."""
        assert self._tracker is not None and self._ctl is not None
        at = BinlogPosition(self._file, ev.packet.log_pos)
        mode = self.config.binary_handling_mode
        try:
            if all(names):
                candidate = schema_from_table_map(*key, ev.columns, mode)
                return self._tracker.replace_from_binlog(at, key, candidate)
            current = catalog.load_schemas(self._ctl, [key], mode).get(key)
            if current is None or len(current.columns) != len(names):
                raise TerminalError(
                    f"the binlog has {len(names)} unnamed columns for {key[0]}.{key[1]} and no "
                    "known table shape matches: set binlog_row_metadata=FULL on the server so "
                    "the binlog names its columns",
                    code="schema_unknown",
                )
            return self._tracker.replace_from_binlog(at, key, current)
        except pymysql.err.MySQLError as exc:
            raise catalog.map_error(exc, "cannot read table definitions") from exc

    def _rows(self, ev: Any) -> None:
        dec = self._decoders.get(ev.table_id)
        if dec is None:
            return
        if ev.number_of_columns != len(ev.columns):  # never decode with another table's map
            raise TerminalError(
                f"a rows event of table id {ev.table_id} has {ev.number_of_columns} columns but "
                f"its table map ({dec.schema.name}) has {len(ev.columns)}",
                code="decode_error",
            )
        ts = ev.timestamp * 1000
        position = {"binlog_file": self._file, "binlog_pos": ev.packet.log_pos}
        assert self._gtids is not None
        txid = self._gtids.txid
        pending = self._pending
        schema = dec.schema
        if not dec.captured:
            self._signal(ev, dec, position)
            return
        self._txn_captured = True
        op = (
            Op.CREATE
            if isinstance(ev, WriteRowsEvent)
            else Op.UPDATE
            if isinstance(ev, UpdateRowsEvent)
            else Op.DELETE
        )
        for before, after in self._images(ev, dec, position):
            pending.append(ChangeEvent(op, schema, before, after, position, ts, txid))

    def _images(
        self, ev: Any, dec: TableDecoder, position: dict[str, Any]
    ) -> list[tuple[dict[str, Any] | None, dict[str, Any] | None]]:
        """(before, after) event images of every row of a rows event."""
        row = dec.row
        if dec.image is not None:
            try:
                return rowcodec.decode(ev, dec.image)
            except rowcodec.NotFast:
                pass  # the packet is untouched: the library decodes it below
            except Exception as exc:  # never skip an event we cannot read
                raise TerminalError(
                    f"cannot decode a row event of {dec.schema.name} at {position}: {exc!r}",
                    code="decode_error",
                ) from exc
        try:
            rows = ev.rows
        except Exception as exc:  # the library cannot decode this event: never skip it
            raise TerminalError(
                f"cannot decode a row event of {dec.schema.name} at {position}: {exc!r}",
                code="decode_error",
            ) from exc
        if isinstance(ev, UpdateRowsEvent):
            return [
                (
                    row(list(r["before_values"].values()), r.get("before_none_sources")),
                    row(list(r["after_values"].values()), r.get("after_none_sources")),
                )
                for r in rows
            ]
        images = [row(list(r["values"].values()), r.get("none_sources")) for r in rows]
        if isinstance(ev, WriteRowsEvent):
            return [(None, a) for a in images]
        return [(b, None) for b in images]

    def _signal(self, ev: Any, dec: TableDecoder, position: dict[str, Any]) -> None:
        """Rows inserted into the signal table become messages (snapshot watermarks)."""
        if not isinstance(ev, WriteRowsEvent):
            return
        self._txn_captured = True
        for r in ev.rows:
            content = orjson.dumps(dec.row(list(r["values"].values())), default=str)
            self._pending.append(Message(SIGNAL_TABLE, content, position, transactional=True))

    def _write_heartbeat(self, now: float) -> None:
        cfg = self.config
        self._next_heartbeat = now + max(cfg.heartbeat_interval_ms, 100) / 1000
        if not (cfg.heartbeat_enabled and cfg.heartbeat_schema) or self._ctl is None:
            return
        try:
            stream.write_heartbeat(self._ctl, cfg.heartbeat_schema, HEARTBEAT_TABLE)
        except pymysql.err.MySQLError as exc:
            raise catalog.map_error(exc, "cannot write the heartbeat table") from exc
        except TideflowError:
            raise
