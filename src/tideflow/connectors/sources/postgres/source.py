"""The ``postgresql`` source: one logical replication slot read with pgoutput.

Data flow: :mod:`.replication` (CopyBoth framing, status updates) → :mod:`.decoder` (pgoutput
→ records, with :mod:`.types` and :mod:`.codegen`) → the runtime. :mod:`.setup` owns the
publication and the slot, :mod:`.heartbeat` keeps an idle slot moving, :mod:`.preflight`
checks a configuration before a start.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from functools import partial
from typing import Any

import psycopg

from tideflow.connectors.base import Problem, Source
from tideflow.connectors.sources.postgres import catalog, connection, preflight, setup, signal
from tideflow.connectors.sources.postgres.config import PostgresSourceConfig
from tideflow.connectors.sources.postgres.decoder import PgOutputDecoder
from tideflow.connectors.sources.postgres.heartbeat import Heartbeat
from tideflow.connectors.sources.postgres.position import format_lsn, lsn_of
from tideflow.connectors.sources.postgres.replication import (
    KEEPALIVE,
    XLOG_START,
    ReplicationStream,
)
from tideflow.connectors.sources.postgres.selection import Selection, column_filter
from tideflow.connectors.sources.postgres.snapshot import PostgresChunkReader
from tideflow.connectors.sources.postgres.types import TypeMap
from tideflow.engine.snapshot.coordinator import Readers
from tideflow.engine.snapshot.reader import ReaderFactory
from tideflow.errors import TerminalError
from tideflow.events import Commit, Record

log = logging.getLogger(__name__)

_XLOG_DATA = 119  # 'w'


class PostgresSource(Source[PostgresSourceConfig]):
    """Reads committed changes of the configured tables from one logical slot.

    Follows the :class:`~tideflow.connectors.base.Source` lifecycle; every method but
    ``drop`` runs on the runtime thread that owns the instance. Records come out in WAL
    order; each transaction ends with a :class:`~tideflow.events.Commit` whose position is the
    commit's end LSN, the only positions the runtime acknowledges.

    Standby status updates go out from ``poll`` and ``ack``, and from a background thread of
    the replication stream while the runtime holds ``poll`` back (back-pressure), so a slow
    destination does not make the server drop the connection after ``wal_sender_timeout``.
    """

    connector = "postgresql"
    #: seconds between standby status updates when nothing else prompts one
    status_interval = 10.0

    def __init__(self, config: PostgresSourceConfig, *, name: str) -> None:
        super().__init__(config, name=name)
        self._sql: psycopg.Connection[Any] | None = None
        self._stream: ReplicationStream | None = None
        self._decoder: PgOutputDecoder | None = None
        self._heartbeat = Heartbeat(config)
        self._signal = signal.table_of(config)  # watermarks as signal-table rows, if set
        self._emitted = 0  # highest Commit position handed to the runtime
        self._acked = 0  # highest position the runtime acknowledged
        self._last_traffic = 0.0

    def preflight(self) -> list[Problem]:
        return preflight.run(self.config)

    def open(self, position: dict[str, Any] | None) -> None:
        cfg = self.config
        start = lsn_of(position) if position is not None else None
        self._sql = sql = connection.connect_sql(cfg)
        try:
            # A restart right after close() may find our previous walsender still exiting.
            info = setup.wait_released(sql, cfg.slot_name, 5)
            # invariant 5: a missing slot or one past our checkpoint means lost changes.
            setup.check_slot(info, cfg.slot_name, cfg.dbname, start)
            selection = Selection.of(cfg)
            if self._signal is not None:
                signal.create(sql, self._signal)
                selection = signal.publish(selection, self._signal)
            setup.ensure_publication(sql, cfg.publication_name, selection, cfg.dbname)
            if info is None:
                info = setup.create_slot(sql, cfg.slot_name)
                log.info("created replication slot %s", cfg.slot_name, extra={"source": self.name})
            self._heartbeat.create_table(sql)
        except psycopg.Error as exc:
            raise connection.classify(cfg, str(exc), exc.sqlstate) from exc
        begin = start if start is not None else info.confirmed_flush
        types = TypeMap(partial(catalog.pg_types, sql), cfg.binary_handling_mode)
        self._decoder = PgOutputDecoder(
            types, partial(catalog.table_facts, sql), column_filter(cfg)
        )
        self._decoder.last_commit_lsn = self._emitted = begin
        self._stream = ReplicationStream(
            connection.conninfo(cfg, replication=True, application_name=cfg.slot_name),
            partial(connection.classify, cfg),
            status_interval=self.status_interval,
        )
        publication = '"' + cfg.publication_name.replace('"', '""') + '"'
        options = [("proto_version", "1"), ("publication_names", publication)]
        if sql.info.server_version >= 140000:
            options.append(("messages", "true"))
        self._stream.start(cfg.slot_name, begin, options, confirmed=info.confirmed_flush)
        self._last_traffic = time.monotonic()
        log.info(
            "streaming slot %s from %s",
            cfg.slot_name,
            format_lsn(begin),
            extra={"source": self.name},
        )

    def poll(self, timeout: float, max_records: int) -> Sequence[Record]:
        stream, decoder = self._stream, self._decoder
        if stream is None or decoder is None:
            raise TerminalError("poll() called before open()")
        now = time.monotonic()
        if self._heartbeat.due(now, self._last_traffic):
            self._write_heartbeat(now)
        out: list[Record] = []
        try:
            with stream.lock:  # the status thread waits while we read
                traffic = self._read(stream, decoder, out, max_records, now + timeout)
        except psycopg.Error as exc:  # a catalog query for a new relation failed
            raise connection.classify(self.config, str(exc), exc.sqlstate) from exc
        if traffic:
            self._last_traffic = time.monotonic()
        self._emitted = max(self._emitted, decoder.last_commit_lsn)
        if self._acked > stream.flushed:
            self._confirm(stream)  # an ack that waited for this instance to deliver it
        if self._signal is not None and out:
            return signal.as_messages(out, ".".join(self._signal))
        return out

    def _read(
        self,
        stream: ReplicationStream,
        decoder: PgOutputDecoder,
        out: list[Record],
        max_records: int,
        deadline: float,
    ) -> bool:
        """Decode messages into ``out``; return whether any WAL data (not keepalive) came."""
        read, decode = stream.read_batch, decoder.decode
        wait = max(0.0, deadline - time.monotonic())
        traffic = False
        # invariant 6: stop at max_records; the rest stays in the socket (TCP back-pressure).
        while len(out) < max_records:
            batch = read(max_records - len(out), wait)
            if not batch:
                break
            for msg in batch:
                if msg[0] == _XLOG_DATA:
                    decode(msg, 25, XLOG_START(msg, 1)[0], out)
                    traffic = True
                elif not decoder.in_transaction:
                    # invariant 4: between transactions, all WAL before this keepalive's WAL
                    # end has been sent to us, so that position may be acknowledged.
                    wal_end = KEEPALIVE(msg, 1)[0]
                    if wal_end > max(self._emitted, decoder.last_commit_lsn):
                        out.append(Commit({"lsn": wal_end}, int(time.time() * 1000), True))
                        self._emitted = wal_end
            # Once something is in hand, return as soon as the buffered data runs out.
            wait = 0.0 if out else max(0.0, deadline - time.monotonic())
        return traffic

    def ack(self, position: dict[str, Any]) -> None:
        """Confirm ``position`` to the slot once this instance has delivered it.

        After a reopen the pipelines still write batches the previous instance read (the
        reopen went back to the oldest checkpoint) and acknowledge their positions, ahead of
        what this instance has delivered. Such an ack is kept and confirmed as far as this
        instance has delivered, the rest when the replay gets there.
        """
        if self._stream is None:
            raise TerminalError("ack() called before open()")
        self._acked = max(self._acked, lsn_of(position))
        if self._decoder is not None:
            self._emitted = max(self._emitted, self._decoder.last_commit_lsn)
        self._confirm(self._stream)

    def _confirm(self, stream: ReplicationStream) -> None:
        # invariant 1: the slot moves only to a position that is acknowledged (durable in every
        # pipeline) and that this instance delivered: an ack past what it delivered cannot be
        # told from one of changes nobody has read, so that part waits for the replay.
        # invariant 2: confirm() ignores positions older than one already confirmed.
        with stream.lock:
            stream.confirm(min(self._acked, self._emitted))

    def close(self) -> None:
        stream, self._stream = self._stream, None
        sql, self._sql = self._sql, None
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.close()
        if sql is not None:
            with contextlib.suppress(Exception):
                sql.close()

    def drop(self, *, force: bool = False) -> None:
        cfg = self.config
        with connection.connect_sql(cfg) as sql:
            try:
                setup.drop_slot(sql, cfg.slot_name, force=force)
                setup.drop_publication(sql, cfg.publication_name)
            except psycopg.Error as exc:
                raise connection.classify(cfg, str(exc), exc.sqlstate) from exc

    def tables(self) -> list[str]:
        """``schema.table`` of every captured table (schema include lists expanded)."""
        selection = Selection.of(self.config)
        if self._sql is not None:
            found = catalog.captured_tables(self._sql, selection)
        else:
            with connection.connect_sql(self.config) as sql:
                found = catalog.captured_tables(sql, selection)
        hidden = ".".join(self._signal) if self._signal is not None else None
        return [t for t in found if t != hidden]

    def snapshot_readers(self) -> Readers:
        """Chunk readers for the snapshot engine, each with its own plain connection."""
        cfg = self.config
        factory: ReaderFactory = partial(PostgresChunkReader, cfg)
        if self._signal is not None:
            factory = partial(signal.SignalTableChunkReader, cfg, self._signal)
        return Readers(factory, cfg.snapshot_chunk_size, cfg.snapshot_parallelism)

    def _write_heartbeat(self, now: float) -> None:
        if self._sql is None:
            return
        try:
            self._heartbeat.write(self._sql, now)
        except psycopg.Error as exc:
            raise connection.classify(self.config, str(exc), exc.sqlstate) from exc
