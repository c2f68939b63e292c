"""One thread per running (source, pipeline): write each batch, then checkpoint it.

Order of effects for every batch (invariant 1): ``destination.write(batch)`` returns only when
the batch is durable → the checkpoint is stored (forward-only, fenced) → only then is the new
durable position visible to the source runner, which acknowledges upstream the minimum across
its pipelines.

Failures while writing: a :class:`~tideflow.engine.errors.PoisonRecord` is dead-lettered or
halts the pipeline per its policy; any other non-terminal error closes the destination, waits
(1 s doubling to 30 s, jittered), re-opens it and re-writes the same batch, for as long as it
takes; a :class:`~tideflow.errors.TerminalError` ends the runner with the unit Broken.
"""

from __future__ import annotations

import inspect
import logging
import queue
import threading
from operator import attrgetter
from typing import Any

from tideflow.connectors import registry
from tideflow.connectors.base import Destination
from tideflow.engine import positions, status
from tideflow.engine.checkpointer import Checkpointer
from tideflow.engine.config import Services
from tideflow.engine.errors import PoisonRecord
from tideflow.engine.metrics import now_ms
from tideflow.engine.plan import PipelinePlan
from tideflow.engine.positions import Position
from tideflow.engine.retry import Backoff, wait
from tideflow.engine.transforms.hook import Transforms
from tideflow.envelope import SourceInfo
from tideflow.errors import TerminalError, TideflowError
from tideflow.events import Batch, Op

log = logging.getLogger(__name__)

_TABLE = attrgetter("table")


class Aborted(Exception):
    """The runner was told to give up now (forced stop); nothing in flight is checkpointed."""


def make_destination(plan: PipelinePlan, info: SourceInfo) -> Destination[Any]:
    """Instantiate the pipeline's destination connector, told which source feeds it."""
    dest = plan.destination
    if dest.config is None:
        raise TerminalError(dest.error or f"destination {dest.name} has no usable config")
    spec = registry.get("destination", dest.code)
    try:
        cls = registry.load_implementation(spec)
    except (ImportError, AttributeError) as exc:
        raise TerminalError(f"destination connector {dest.code} is not available: {exc}") from exc
    kwargs: dict[str, Any] = {"name": dest.name}
    if "source" in inspect.signature(cls).parameters:
        kwargs["source"] = info
    instance: Destination[Any] = cls(dest.config, **kwargs)
    bind = getattr(instance, "bind_source", None)
    if callable(bind):
        bind(info)
    return instance


class PipelineRunner:
    """Consumes batches from its queue; owned by a source runner.

    Thread-safety: :meth:`offer`, :meth:`finish`, :meth:`durable` and the properties are
    called from the source runner's thread; everything else runs on this runner's thread.
    """

    def __init__(
        self,
        plan: PipelinePlan,
        info: SourceInfo,
        services: Services,
        abort: threading.Event,
        durable: Position | None,
    ) -> None:
        self.plan = plan
        self.info = info
        self.services = services
        self.abort = abort
        self.unit = status.pipeline_unit(plan.id)
        self.queue: queue.Queue[Batch | None] = queue.Queue(services.config.queue_depth)
        self.failed: TideflowError | None = None
        self.metrics = services.metrics.unit(self.unit)
        services.metrics.owners[self.unit] = plan.destination.id
        self.metrics.reset_in_flight()
        self._lock = threading.Lock()
        self._durable = durable
        self._retrying = False
        self._stop_next = False
        self._submitted: Position | None = None
        self._store_retrying = False
        self._checkpointer: Checkpointer | None = None
        self._transforms: Transforms | None = None  # None: the untransformed fast path
        self._offering: Batch | None = None  # the batch offer() is trying to queue
        self._held: Batch | None = None  # a chunk batch taken while merging: next in line
        self._thread = threading.Thread(target=self._run, name=f"tideflow-{self.unit}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def durable(self) -> Position | None:
        """The newest position whose batch is durable and checkpointed."""
        with self._lock:
            return self._durable

    def offer(self, batch: Batch, timeout: float) -> bool:
        """Queue ``batch``; False when the queue stayed full for ``timeout`` seconds.

        The batch counts as in flight from the first attempt (it has been read, it is not
        durable): lag and latency keep growing while back-pressure holds it at the door, and
        the count precedes the runner's ``note_done`` for it.
        """
        if batch is not self._offering:
            self._offering = batch
            self.metrics.note_offered(batch)
        try:
            self.queue.put(batch, timeout=timeout)
        except queue.Full:
            return False
        self._offering = None
        return True

    def finish(self) -> None:
        """Ask the runner to end after the batches already queued (graceful stop)."""
        while self.alive and not self.abort.is_set():
            try:
                self.queue.put(None, timeout=0.1)
                return
            except queue.Full:
                continue

    def _report(self, state: str, message: str = "") -> None:
        self.services.status.report(self.unit, state, message, part=self.plan.source_id)

    def _run(self) -> None:
        dest: Destination[Any] | None = None
        cfg = self.services.config
        self._checkpointer = Checkpointer(
            self.services.checkpoints,
            self.plan.checkpoint_unit,
            self._publish,
            self._store_retry,
            self.abort,
            Backoff(cfg.retry_initial, cfg.retry_max),
        )
        try:
            self._report(status.STARTING)
            dest = make_destination(self.plan, self.info)
            token = getattr(self.services.checkpoints.fence, "token", None)
            if token is not None:
                # Cluster mode: the lease's generation is checked where the data lands too,
                # so a write in flight when this worker froze cannot land after the next
                # owner's (docs/cluster.md, "Fencing").
                dest.fence(self.plan.checkpoint_unit, token[1])
            resume = getattr(dest, "resume_from", None)
            if callable(resume):
                # Where the replay starts: a destination that can tell which of the replayed
                # changes it already holds (Kafka transactions) skips them (invariant 2).
                resume(self._durable)
            if self.plan.transforms:
                self._transforms = Transforms(self.plan, self.metrics, self.unit)
            self._with_retry(dest, None)
            self._report(status.ACTIVE)
            while True:
                batch = self._next()
                if batch is None:
                    # Graceful end: the last positions must be stored before we are done.
                    if not self._checkpointer.flush() and self._checkpointer.failed:
                        raise self._checkpointer.failed
                    return
                self._deliver(dest, batch)
        except Aborted:
            return
        except TerminalError as exc:
            self.failed = exc
            self.metrics.errors += 1
            self._report(status.BROKEN, exc.message)
            log.error("%s stopped: %s", self.unit, exc.message, extra={"unit": self.unit})
        except Exception as exc:  # a bug in the runtime itself: report it, never hide it
            self.failed = TerminalError(f"internal error: {exc!r}")
            self._report(status.BROKEN, self.failed.message)
            log.exception("%s crashed", self.unit, extra={"unit": self.unit})
        finally:
            if self._transforms is not None:
                self._transforms.close()
            self.metrics.reset_in_flight()  # nothing is in flight once this runner is gone
            self._checkpointer.close()
            if dest is not None:
                dest.close()

    def _next(self) -> Batch | None:
        """The next batch, merged with those already waiting (up to ``coalesce_events``)."""
        if self._stop_next:
            return None
        first, self._held = self._held, None
        while first is None:
            if self.abort.is_set():
                raise Aborted
            try:
                first = self.queue.get(timeout=0.2)
                break
            except queue.Empty:
                continue
        if first is None:
            return None
        if first.chunk is not None:
            return first  # a snapshot chunk travels alone (see Batch.chunk)
        limit = self.services.config.coalesce_events
        merged: Batch | None = None
        while len((merged or first).events) < limit:
            try:
                nxt = self.queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                self._stop_next = True  # the stop request comes after this merged batch
                break
            if nxt.chunk is not None:
                self._held = nxt
                break
            if merged is None:
                merged = Batch(
                    list(first.events), first.position, first.last_commit_ts_ms, first.bytes
                )
            merged.events.extend(nxt.events)
            merged.position = nxt.position
            merged.last_commit_ts_ms = nxt.last_commit_ts_ms
            merged.bytes += nxt.bytes
        return merged or first

    def _filter(self, batch: Batch) -> Batch:
        topics = self.plan.topics
        chunk = batch.chunk
        if topics is not None and chunk is not None and chunk.table.name not in topics:
            return Batch([], batch.position, batch.last_commit_ts_ms, 0)
        if topics is None or not batch.events:
            return batch
        # One test per distinct table object, not per event (TableSchema.name is a property
        # that builds a string); map, count, zip and dict() run in C.
        schemas = list(map(_TABLE, batch.events))
        first = schemas[0]
        if schemas.count(first) == len(schemas):  # count compares identities first
            if first.name in topics:
                return batch
            return Batch([], batch.position, batch.last_commit_ts_ms, batch.bytes)
        tables = dict(zip(map(id, schemas), schemas, strict=True))
        keep = {i for i, t in tables.items() if t.name in topics}
        if len(keep) == len(tables):
            return batch
        events = [e for e in batch.events if id(e.table) in keep]
        return Batch(events, batch.position, batch.last_commit_ts_ms, batch.bytes)

    def _deliver(self, dest: Destination[Any], batch: Batch) -> None:
        offered = len(batch.events)
        batch = self._filter(batch)
        if batch.chunk is not None and (
            self._transforms is not None or not getattr(dest, "takes_chunks", False)
        ):
            batch = _expanded(batch)
        if self._transforms is not None:
            batch = self._transforms.apply(batch, dest)
        if batch.events or batch.chunk is not None:
            self._with_retry(dest, batch)
        if batch.chunk is not None and self.metrics.on:
            rows, read = batch.chunk.rows, Op.READ.value
            self.metrics.events[read] += rows
            self.metrics.tables[(batch.chunk.table.name, read)] += rows
        self._checkpoint(batch)
        self.metrics.record_batch(batch, durable_at_ms=now_ms())
        self.metrics.note_done(offered)

    def _with_retry(self, dest: Destination[Any], batch: Batch | None) -> None:
        """Open (``batch`` None) or write ``batch``, retrying transient failures forever."""
        cfg = self.services.config
        backoff = Backoff(cfg.retry_initial, cfg.retry_max)
        reopen = batch is None
        while True:
            try:
                if reopen:
                    dest.close()
                    dest.open()
                    reopen = False
                if batch is not None:
                    self._write(dest, batch)
                if self._retrying:
                    self._retrying = False
                    self._report(status.ACTIVE)
                return
            except TerminalError:
                raise
            except Exception as exc:
                reopen = True
                delay = backoff.next_delay()
                self.metrics.retries += 1
                self.metrics.errors += 1
                self._retrying = True
                message = exc.message if isinstance(exc, TideflowError) else repr(exc)
                state = status.STARTING if batch is None else status.ACTIVE
                self._report(
                    state, f"retrying in {delay:.1f}s (attempt {backoff.attempt}): {message}"
                )
                log.warning(
                    "%s: %s; retrying in %.1fs",
                    self.unit,
                    message,
                    delay,
                    extra={"unit": self.unit},
                )
                if wait(self.abort, delay):
                    raise Aborted from None

    def _write(self, dest: Destination[Any], batch: Batch) -> None:
        while True:
            self._await_lease()
            try:
                dest.write(batch)
                return
            except PoisonRecord as poison:
                if batch.chunk is not None:
                    batch = _expanded(batch)  # find the refused rows among the chunk's events
                    continue
                write_letters = getattr(dest, "write_dead_letters", None)
                if self.plan.policy != "dead_letter" or not callable(write_letters):
                    raise
                refused = {id(letter.event) for letter in poison.letters}
                remaining = [e for e in batch.events if id(e) not in refused]
                if len(remaining) == len(batch.events):
                    raise TerminalError(
                        f"{poison.message} (the refused events are not in the batch)"
                    ) from poison
                # Letters first: a crash now replays the batch and writes them again, which
                # the destination makes idempotent; never a silent drop.
                write_letters(poison.letters)
                self.metrics.dead_letters += len(poison.letters)
                log.warning(
                    "%s: %d events dead-lettered: %s",
                    self.unit,
                    len(poison.letters),
                    poison.message,
                    extra={"unit": self.unit},
                )
                batch = Batch(remaining, batch.position, batch.last_commit_ts_ms, batch.bytes)

    def _await_lease(self) -> None:
        """Write-side fencing (cluster mode): start no write while this worker's lease may have
        expired by its own clock (e.g. it was frozen); wait for a renewal or an abort."""
        may_write = getattr(self.services.checkpoints.fence, "may_write", None)
        if may_write is None:
            return
        while not may_write():
            if wait(self.abort, 0.1):
                raise Aborted

    def _checkpoint(self, batch: Batch) -> None:
        """Hand the batch's position to the checkpointer (it publishes it once stored)."""
        checkpointer = self._checkpointer
        assert checkpointer is not None
        if checkpointer.failed is not None:
            raise checkpointer.failed
        position = batch.position
        if position is None or position == self._submitted:
            return
        current = self.durable()
        if current is not None and not positions.before(current, position):
            return
        self._submitted = position
        checkpointer.submit(position)

    def _publish(self, stored: Position) -> None:
        if self._store_retrying:
            self._store_retrying = False
            self._report(status.ACTIVE)
        # invariant 1: the source runner sees this position only now that it is checkpointed.
        with self._lock:
            self._durable = positions.newest(self._durable, stored)

    def _store_retry(self, delay: float, exc: Exception) -> None:
        self._store_retrying = True
        self._report(
            status.ACTIVE, f"cannot store the checkpoint, retrying in {delay:.1f}s: {exc!r}"
        )


def _expanded(batch: Batch) -> Batch:
    """A snapshot chunk's batch with the chunk turned into one ``op=r`` event per row, for
    destinations that do not take chunks and for transforms."""
    assert batch.chunk is not None
    return Batch(batch.chunk.events(), batch.position, batch.last_commit_ts_ms, batch.bytes)
