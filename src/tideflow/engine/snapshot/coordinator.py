"""Runs the snapshots of one source next to its stream (DBLog watermarks).

Threads and what they own:

- the **source runner thread** calls :meth:`Coordinator.process` with every poll's records
  and :meth:`Coordinator.on_ack` after each acknowledgement. It owns the open windows and is
  the only thread that turns chunk rows into events, so snapshot rows enter the stream at
  their high watermark, in stream order (invariant 3). It never touches the metadata store.
- the **planner thread** loads requests (every second, and at once when the API of this
  process nudges it, see :mod:`.nudge`), plans chunk boundaries, hands chunks to the readers,
  and persists progress once chunks are durable.
- ``parallelism`` **reader threads** each hold one connection and read one chunk at a time:
  low watermark, bounded query, high watermark.

Memory (invariant 6): at most ``2 * parallelism`` chunks of ``chunk_size`` rows are held
(read, waiting for their high watermark); the planner plans no further until one is emitted.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from tideflow.engine import positions
from tideflow.engine.positions import Position
from tideflow.engine.snapshot import chunks, nudge, watermark
from tideflow.engine.snapshot.progress import (
    BLOCKING,
    CANCELLED,
    COMPLETED,
    FAILED,
    Progress,
    Task,
)
from tideflow.engine.snapshot.reader import (
    ChunkReader,
    ReaderFactory,
    SnapshotError,
    TablePlan,
    TextKey,
)
from tideflow.engine.snapshot.window import Window
from tideflow.events import ChangeEvent, Message, Op, Record, SnapshotChunk, TableSchema
from tideflow.store.db import Store

log = logging.getLogger(__name__)

_RETRIES = 3


@dataclass(frozen=True)
class Readers:
    """What a source offers for snapshots (its ``snapshot_readers()``)."""

    factory: ReaderFactory
    chunk_size: int = 10_000
    parallelism: int = 2


@dataclass(eq=False)
class _Table:
    task: Task
    plan: TablePlan
    after: TextKey | None  # where boundary planning continues
    last_key: TextKey | None  # durable: every row up to here is at every destination
    chunks_done: int
    rows_read: int
    next_idx: int = 0
    durable_idx: int = 0
    exhausted: bool = False  # the final chunk is planned
    cancelled: bool = False
    done: dict[int, _Chunk] = field(default_factory=dict)


@dataclass(eq=False)
class _Chunk:
    id: str
    table: _Table
    idx: int
    after: TextKey | None
    upto: TextKey | None  # None: the final chunk, unbounded above
    rows: list[dict[str, Any]] | None = None
    raw: SnapshotChunk | None = None  # the rows as COPY text, from readers that offer it
    last: TextKey | None = None
    read_count: int = 0
    position: Position | None = None  # of the high watermark, once emitted


class Coordinator:
    #: seconds between reads of the requests in the store (a nudge reads them at once)
    reload_every = 1.0

    def __init__(
        self,
        source_id: str,
        store: Store,
        readers: Readers,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.source_id = source_id
        self.progress = Progress(store, source_id)
        self.readers = readers
        self._stopping = stopping
        self._run = secrets.token_hex(4)  # marks of an earlier run match no chunk of this one
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._reload_now = False  # set by a nudge: read the requests on the next turn
        self._unlisten: Callable[[], None] | None = None
        self._tables: dict[str, _Table] = {}
        self._chunks: dict[str, _Chunk] = {}  # planned, not yet emitted
        self._inflight = 0
        self._unacked: deque[_Chunk] = deque()  # emitted, in stream order
        self._acked: Position | None = None
        self._windows: dict[str, Window] = {}  # runner thread only
        self._schemas: dict[str, TableSchema] = {}  # runner thread only
        self._scanner: ChunkReader | None = None  # runner thread only (blocking snapshots)
        self._queue: queue.Queue[_Chunk] = queue.Queue()
        self._threads = [threading.Thread(target=self._plan_loop, daemon=True)]
        self._threads += [
            threading.Thread(target=self._read_loop, daemon=True)
            for _ in range(readers.parallelism)
        ]
        #: whether the runner must hand records to :meth:`process` (cheap to read)
        self.live = False

    def start(self) -> None:
        self._unlisten = nudge.listen(self.source_id, self._nudged)
        for i, t in enumerate(self._threads):
            t.name = f"tideflow-snapshot-{self.source_id}-{i}"
            t.start()

    def close(self) -> None:
        """Stop the threads; unfinished tables stay running in the store and resume later."""
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        self._stop.set()
        self._wake.set()
        # Readers finish their current query first; a stop waits at most 5 s in all.
        deadline = time.monotonic() + 5.0
        for t in self._threads:
            if t.is_alive():
                t.join(max(0.0, deadline - time.monotonic()))
        if self._scanner is not None:
            self._scanner.close()
            self._scanner = None

    def _nudged(self) -> None:
        self._reload_now = True
        self._wake.set()

    def process(self, records: Sequence[Record]) -> Iterator[Sequence[Record]]:
        """Runner thread: the records, with snapshot rows inserted at their high watermarks."""
        out: list[Record] = []
        windows, schemas = self._windows, self._schemas
        for record in records:
            cls = record.__class__
            if cls is ChangeEvent:
                assert isinstance(record, ChangeEvent)
                name = record.table.name
                schemas[name] = record.table
                for w in windows.values():
                    if w.table == name:
                        w.note(record)
            elif cls is Message:
                assert isinstance(record, Message)
                mark = watermark.decode(record)
                if mark is not None:
                    out.append(record)
                    yield from self._on_mark(mark, record, out)
                    continue
            out.append(record)
        yield out

    def _on_mark(
        self, mark: watermark.Watermark, message: Message, out: list[Record]
    ) -> Iterator[Sequence[Record]]:
        with self._lock:
            chunk = self._chunks.get(mark.id)
            if mark.kind != "low" and chunk is not None:
                del self._chunks[mark.id]  # a repeated high (retried write) is ignored
        if chunk is None:
            self._windows.pop(mark.id, None)
            return
        if mark.kind == "low":
            self._windows[mark.id] = Window(chunk.table.plan.schema.name, chunk.table.plan.key)
            return
        if mark.kind == "high":
            window = self._windows.pop(mark.id, None)
            with self._lock:
                rows, chunk.rows = chunk.rows or [], None
                raw, chunk.raw = chunk.raw, None
            if window is not None and not chunk.table.cancelled:
                if raw is not None:
                    out.extend(chunks.survivors(self._stamped(chunk.table.plan, raw), window))
                else:
                    out.extend(self._events(chunk.table.plan, window.survivors(rows), message))
            self._emitted(chunk, message.position)
            return
        # Blocking: streaming stops here (this thread reads) until the table is copied.
        yield out[:]
        out.clear()
        copied = yield from self._copy(chunk, message)
        if copied:
            self._emitted(chunk, message.position)
        else:
            with self._lock:
                self._inflight -= 1

    def _copy(self, chunk: _Chunk, message: Message) -> Generator[list[Record], None, bool]:
        plan = chunk.table.plan
        try:
            if self._scanner is None:
                self._scanner = self.readers.factory()
            parts = self._scanner.scan(plan, None, self.readers.chunk_size)
            try:
                for part in parts:
                    if self._stopping() or chunk.table.cancelled:
                        return False  # redone from the start on the next run
                    if isinstance(part, SnapshotChunk):
                        chunk.read_count += part.rows
                        yield [self._stamped(plan, part)]
                    else:
                        chunk.read_count += len(part)
                        yield list(self._events(plan, part, message))
            finally:
                close = getattr(parts, "close", None)
                if close is not None:
                    close()  # an abandoned scan ends its query now, not when collected
        except Exception as exc:
            if self._scanner is not None:
                self._scanner.close()
                self._scanner = None
            self._fail(chunk.table, f"blocking snapshot of {plan.schema.name} failed: {exc}")
            return False
        return True

    def _events(
        self, plan: TablePlan, rows: list[dict[str, Any]], message: Message
    ) -> list[ChangeEvent]:
        schema = plan.schema
        streamed = self._schemas.get(schema.name)
        if streamed is not None and streamed.columns == schema.columns:
            schema = streamed  # same shape: keep the stream's schema version
        now = int(time.time() * 1000)
        read = Op.READ
        # No source position: a change the chunk's read did not see may have been written to
        # the log *before* the high mark (its transaction committed later), so a row tagged
        # with the mark's position would make a destination's position guard refuse that
        # change as older. The row is right where it stands in the stream (window merge).
        return [ChangeEvent(read, schema, None, row, {}, now, None, True) for row in rows]

    def _stamped(self, plan: TablePlan, raw: SnapshotChunk) -> SnapshotChunk:
        """``raw`` with the emission time and, for the same shape, the stream's schema."""
        schema = plan.schema
        streamed = self._schemas.get(schema.name)
        if streamed is not None and streamed.columns == schema.columns:
            schema = streamed
        # No source position either (see _events).
        return dataclasses.replace(raw, table=schema, commit_ts_ms=int(time.time() * 1000))

    def _emitted(self, chunk: _Chunk, position: Position) -> None:
        with self._lock:
            chunk.position = position
            self._inflight -= 1
            self._unacked.append(chunk)
        self._wake.set()

    def on_ack(self, position: Position) -> None:
        """Runner thread: everything before ``position`` is durable and checkpointed."""
        with self._lock:
            self._acked = position
            pending = bool(self._unacked)
        if pending:
            self._wake.set()

    def _plan_loop(self) -> None:
        reader: ChunkReader | None = None
        next_reload = 0.0
        try:
            while not self._stop.is_set():
                try:
                    if reader is None:
                        reader = self.readers.factory()
                    if self._reload_now or time.monotonic() >= next_reload:
                        self._reload_now = False
                        self._reload(reader)
                        next_reload = time.monotonic() + self.reload_every
                    self._settle()
                    self._schedule(reader)
                except Exception as exc:  # the database or the store is unreachable: retry
                    log.warning("snapshot planner of source %s: %s", self.source_id, exc)
                    if reader is not None:
                        reader.close()
                        reader = None
                    self._stop.wait(2.0)
                self._wake.wait(0.5)
                self._wake.clear()
        finally:
            if reader is not None:
                reader.close()

    def _reload(self, reader: ChunkReader) -> None:
        tasks = {t.id: t for t in self.progress.active()}
        for task_id, table in list(self._tables.items()):
            if task_id not in tasks:  # cancelled (or deleted) through the API
                table.cancelled = True
                self._forget(table)
        for task in tasks.values():
            if task.id not in self._tables:
                self._begin(reader, task)
        with self._lock:
            self.live = bool(self._tables) or bool(self._chunks)

    def _begin(self, reader: ChunkReader, task: Task) -> None:
        try:
            plan = reader.plan(task.table, task.surrogate_key)
            if task.kind != BLOCKING and not plan.key:
                raise SnapshotError(
                    f"table {task.table} has no primary key: give a surrogate_key or use a "
                    f"blocking snapshot"
                )
            if task.filter:
                reader.check_filter(task.table, task.filter)
        except SnapshotError as exc:
            self.progress.finish(task.id, FAILED, str(exc))
            return
        table = _Table(task, plan, task.last_key, task.last_key, task.chunks_done, task.rows_read)
        self.progress.start(task.id, plan.estimate)
        if task.kind == BLOCKING:
            table.exhausted = True
            table.next_idx = 1
            chunk = self._register(table, 0, None, None)
            try:
                reader.watermark(watermark.encode(watermark.Watermark(chunk.id, "blocking")))
            except Exception:
                self._drop(chunk)  # not begun: the next reload tries again
                raise
        with self._lock:
            self._tables[task.id] = table
            self.live = True
        log.info("snapshot of %s started", task.table, extra={"source": self.source_id})

    def _register(
        self, table: _Table, idx: int, after: TextKey | None, upto: TextKey | None
    ) -> _Chunk:
        chunk = _Chunk(f"{self._run}:{table.task.id}:{idx}", table, idx, after, upto)
        with self._lock:
            self._chunks[chunk.id] = chunk
            self._inflight += 1
            self.live = True
        return chunk

    def _schedule(self, reader: ChunkReader) -> None:
        limit = 2 * self.readers.parallelism
        while not self._stop.is_set():
            open_tables = [t for t in self._tables.values() if not t.exhausted and not t.cancelled]
            if not open_tables:
                return
            progressed = False
            for table in open_tables:  # round robin: several tables move together
                with self._lock:
                    if self._inflight >= limit:
                        return
                size = self.readers.chunk_size
                task = table.task
                upto = reader.boundary(table.plan, table.after, size, task.filter)
                chunk = self._register(table, table.next_idx, table.after, upto)
                table.next_idx += 1
                table.after = upto
                table.exhausted = upto is None
                self._queue.put(chunk)
                progressed = True
            if not progressed:
                return

    def _read_loop(self) -> None:
        reader: ChunkReader | None = None
        try:
            while not self._stop.is_set():
                try:
                    chunk = self._queue.get(timeout=0.5)
                except queue.Empty:
                    continue
                reader = self._read(reader, chunk)
        finally:
            if reader is not None:
                reader.close()

    def _read(self, reader: ChunkReader | None, chunk: _Chunk) -> ChunkReader | None:
        table = chunk.table
        for attempt in range(_RETRIES + 1):
            if table.cancelled or self._stop.is_set():
                self._drop(chunk)
                return reader
            try:
                if reader is None:
                    reader = self.readers.factory()
                # The read starts after the low mark commits: every change the read can miss
                # was committed before it and already streamed (DBLog).
                reader.watermark(watermark.encode(watermark.Watermark(chunk.id, "low")))
                got = reader.read_chunk(table.plan, chunk.after, chunk.upto, table.task.filter)
                with self._lock:
                    chunk.rows, chunk.raw, chunk.last = got.rows, got.chunk, got.last
                    chunk.read_count = got.count
                reader.watermark(watermark.encode(watermark.Watermark(chunk.id, "high")))
                return reader
            except Exception as exc:
                if reader is not None:
                    reader.close()
                    reader = None
                if attempt == _RETRIES:
                    self._fail(table, f"reading {table.task.table} failed: {exc}")
                    self._drop(chunk)
                    return reader
                self._stop.wait(2.0**attempt)
        return reader

    def _drop(self, chunk: _Chunk) -> None:
        with self._lock:
            if self._chunks.pop(chunk.id, None) is not None:
                self._inflight -= 1
        self._wake.set()

    def _fail(self, table: _Table, message: str) -> None:
        log.error("%s", message, extra={"source": self.source_id})
        table.cancelled = True
        self.progress.finish(table.task.id, FAILED, message)
        self._forget(table)

    def _forget(self, table: _Table) -> None:
        # Its chunks already read are dropped by the runner at their high mark (the table is
        # cancelled); chunks not yet read are dropped by the readers.
        with self._lock:
            self._tables.pop(table.task.id, None)
        self._wake.set()

    def _settle(self) -> None:
        """Persist the progress of chunks now durable (invariant 1: after the checkpoint)."""
        durable: list[_Chunk] = []
        with self._lock:
            acked = self._acked
            while (
                acked is not None
                and self._unacked
                and self._unacked[0].position is not None
                and positions.before(self._unacked[0].position, acked)
            ):
                durable.append(self._unacked.popleft())
        touched: dict[str, _Table] = {}
        for chunk in durable:
            table = chunk.table
            if table.cancelled:
                continue
            table.done[chunk.idx] = chunk
            touched[table.task.id] = table
        for table in touched.values():
            finished = False
            while table.durable_idx in table.done:
                c = table.done.pop(table.durable_idx)
                table.durable_idx += 1
                table.chunks_done += 1
                table.rows_read += c.read_count
                table.last_key = c.upto if c.upto is not None else (c.last or table.last_key)
                finished = c.upto is None
            self.progress.advance(table.task.id, table.last_key, table.chunks_done, table.rows_read)
            if finished:
                self.progress.finish(table.task.id, COMPLETED)
                log.info(
                    "snapshot of %s completed: %d rows",
                    table.task.table,
                    table.rows_read,
                    extra={"source": self.source_id},
                )
                with self._lock:
                    self._tables.pop(table.task.id, None)
        with self._lock:
            self.live = bool(self._tables) or bool(self._chunks) or bool(self._unacked)


def attach(
    source_id: str,
    source: object,
    store: Store,
    stopping: Callable[[], bool],
    binary_chunks: bool = False,
) -> Coordinator | None:
    """A started coordinator for a source that offers ``snapshot_readers()``, else None.

    Called on the source runner thread right after ``Source.open``. ``binary_chunks``: every
    pipeline of the source loads binary chunks as they are (see :mod:`.reader`).
    """
    offer = getattr(source, "snapshot_readers", None)
    if offer is None:
        return None
    readers = offer()
    if not isinstance(readers, Readers):
        return None
    if binary_chunks:
        readers = dataclasses.replace(readers, factory=partial(_binary_reader, readers.factory))
    coordinator = Coordinator(source_id, store, readers, stopping)
    coordinator.start()
    return coordinator


def _binary_reader(factory: ReaderFactory) -> ChunkReader:
    reader = factory()
    if hasattr(reader, "binary_chunks"):
        reader.binary_chunks = True
    return reader


__all__ = ["CANCELLED", "Coordinator", "Readers", "attach"]
