"""One thread per running source: poll → batch → fan out → acknowledge.

The runner owns the :class:`~tideflow.connectors.base.Source` instance (every call to it is
made from this thread) and the :class:`PipelineRunner` of each pipeline it feeds. Records are
cut into bounded batches (:mod:`.batching`) and the same batch is handed to every pipeline
through its bounded queue; a full queue blocks the fan-out, so the source stops polling
(back-pressure: invariant 6). Pipelines treat batches as read-only.

Acknowledgement (invariant 1): upstream is acknowledged with the oldest of the pipelines'
durable (checkpointed) positions and of the checkpoints of this source's pipelines that are
not running (paused, stopped, broken), so a pipeline that resumes later finds its changes.

The source opens from the oldest checkpoint of the pipelines it feeds (None when none has
one). Pipelines ahead of that position receive changes again (duplicates, never gaps:
invariant 2). Transient source errors close the source and re-open it from the oldest durable
position after a backoff; pipelines keep their queues meanwhile.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from pathlib import Path
from typing import Any

from tideflow.connectors import registry
from tideflow.connectors.base import Source
from tideflow.engine import positions, status
from tideflow.engine.batching import Batcher
from tideflow.engine.config import Services
from tideflow.engine.pipeline_runner import PipelineRunner
from tideflow.engine.plan import Connector, PipelinePlan
from tideflow.engine.positions import Position
from tideflow.engine.retry import Backoff, wait
from tideflow.engine.snapshot import coordinator as snapshot
from tideflow.envelope import SourceInfo
from tideflow.errors import Invalid, TerminalError, TideflowError
from tideflow.events import Batch, ChangeEvent
from tideflow.settings import get_settings
from tideflow.store.db import Store

log = logging.getLogger(__name__)


class Stopping(Exception):
    """Raised inside the poll loop when the runner must end (stop or abort)."""


def services_store(services: Services) -> Store:
    return services.checkpoints.store


def make_source(source: Connector) -> Source[Any]:
    if source.config is None:
        raise TerminalError(source.error or f"source {source.name} has no usable config")
    spec = registry.get("source", source.code)
    try:
        cls = registry.load_implementation(spec)
    except (ImportError, AttributeError) as exc:
        raise TerminalError(f"source connector {source.code} is not available: {exc}") from exc
    kwargs: dict[str, Any] = {"name": source.name}
    if "state_dir" in inspect.signature(cls).parameters:
        # Keyed by id, not name: a rename keeps the state, a new source with an old name
        # does not inherit it.
        kwargs["state_dir"] = state_dir(source.id)
    instance: Source[Any] = cls(source.config, **kwargs)
    return instance


def binary_chunks(plans: list[PipelinePlan]) -> bool:
    """Whether every pipeline loads binary snapshot chunks as they are (ADR 0005): none has
    transforms (they work on rows) and every destination declares ``takes_binary_chunks``."""
    for plan in plans:
        if plan.transforms:
            return False
        try:
            cls = registry.load_implementation(registry.get("destination", plan.destination.code))
        except (Invalid, ImportError, AttributeError):  # failing elsewhere anyway
            return False
        if not getattr(cls, "takes_binary_chunks", False):
            return False
    return bool(plans)


def state_dir(source_id: str) -> Path:
    """The directory where a source keeps connector-private state (e.g. MySQL schema history)."""
    return get_settings().data_dir / "sources" / source_id


class SourceRunner:
    """Runs one source and the pipelines it feeds, until stopped or failed.

    The supervisor calls :meth:`start`, :meth:`stop` (graceful: flush, checkpoint, ack,
    close), :meth:`abort` (give up on in-flight batches now), :meth:`update_pins`,
    :meth:`take_failures` and reads :attr:`key`; all of them are thread-safe.
    """

    def __init__(
        self,
        source: Connector,
        info: SourceInfo,
        pipelines: list[PipelinePlan],
        services: Services,
        pins: dict[str, Position],
    ) -> None:
        self.source = source
        self.info = info
        self.services = services
        self.unit = status.source_unit(source.id)
        self.failed: TideflowError | None = None
        self.started_at = time.monotonic()
        self.stop_requested_at: float | None = None
        self.key = (source.fingerprint, frozenset((p.id, p.fingerprint) for p in pipelines))
        self.metrics = services.metrics.unit(self.unit)
        self.plans = pipelines
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._lock = threading.Lock()
        self._pins = dict(pins)
        self._detached: dict[str, Position] = {}
        self._failures: list[tuple[str, TideflowError]] = []
        self._members: dict[str, PipelineRunner] = {}
        self._last_ack: Position | None = None
        self._last_fanned: Position | None = None
        self._last_error = ""
        self._snap: snapshot.Coordinator | None = None  # per opened source instance
        self._thread = threading.Thread(target=self._run, name=f"tideflow-{self.unit}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def stop(self) -> None:
        if self.stop_requested_at is None:
            self.stop_requested_at = time.monotonic()
        self._stop.set()

    def abort(self) -> None:
        self._abort.set()
        self._stop.set()

    def members(self) -> frozenset[tuple[str, str]]:
        """(pipeline id, fingerprint) of the pipelines still running."""
        with self._lock:
            return frozenset((pid, r.plan.fingerprint) for pid, r in self._members.items())

    def update_pins(self, pins: dict[str, Position], existing: set[str]) -> None:
        """Positions of this source's pipelines that are not running (they hold the ack)."""
        with self._lock:
            self._pins = dict(pins)
            self._detached = {k: v for k, v in self._detached.items() if k in existing}

    def take_failures(self) -> list[tuple[str, TideflowError]]:
        with self._lock:
            failures, self._failures = self._failures, []
            return failures

    def _report(self, state: str, message: str = "") -> None:
        self.services.status.report(self.unit, state, message)

    def _run(self) -> None:
        try:
            self._start_members()
            self._supervise_source()
        except Exception as exc:  # a bug in the runtime itself: report it, never hide it
            self.failed = TerminalError(f"internal error: {exc!r}")
            self._report(status.BROKEN, self.failed.message)
            log.exception("%s crashed", self.unit, extra={"unit": self.unit})
        finally:
            self._finish_members()

    def _start_members(self) -> None:
        durable = self.services.checkpoints.load_many([p.checkpoint_unit for p in self.plans])
        for plan in self.plans:
            runner = PipelineRunner(
                plan, self.info, self.services, self._abort, durable.get(plan.checkpoint_unit)
            )
            self._members[plan.id] = runner
            runner.start()

    def _supervise_source(self) -> None:
        cfg = self.services.config
        backoff = Backoff(cfg.retry_initial, cfg.retry_max)
        opened_once = False
        opened_at: float | None = None
        while not self._stop.is_set():
            src: Source[Any] | None = None
            try:
                self._report(status.STARTING, self._retry_message(backoff))
                src = make_source(self.source)
                start = self._open_position()
                src.open(start)
                self._snap = snapshot.attach(
                    self.source.id,
                    src,
                    services_store(self.services),
                    self._stop.is_set,
                    binary_chunks(self.plans),
                )
                opened_once = True
                opened_at = time.monotonic()
                self.metrics.connected = True
                self._report(status.ACTIVE)
                self._poll_loop(src, start)
                return
            except Stopping:
                return
            except TerminalError as exc:
                self.failed = exc
                self._report(status.BROKEN, exc.message)
                log.error("%s stopped: %s", self.unit, exc.message, extra={"unit": self.unit})
                return
            except Exception as exc:
                message = exc.message if isinstance(exc, TideflowError) else repr(exc)
                if opened_at is not None and time.monotonic() - opened_at > cfg.retry_max:
                    backoff.reset()  # it worked for a while: this is a new failure, not a loop
                opened_at = None
                self.metrics.connected = False
                self.metrics.errors += 1
                self.metrics.retries += 1
                delay = backoff.next_delay()
                self._last_error = (
                    f"retrying in {delay:.1f}s (attempt {backoff.attempt}): {message}"
                )
                self._report(status.ACTIVE if opened_once else status.STARTING, self._last_error)
                log.warning(
                    "%s: %s; retrying in %.1fs",
                    self.unit,
                    message,
                    delay,
                    extra={"unit": self.unit},
                )
                if src is not None:
                    src.close()
                    src = None
                if wait(self._stop, delay):
                    return
            finally:
                self.metrics.connected = False
                if self._snap is not None:
                    self._snap.close()  # unfinished snapshot tables resume from the store
                    self._snap = None
                if src is not None:
                    src.close()

    def _retry_message(self, backoff: Backoff) -> str:
        return self._last_error if backoff.attempt else ""

    def _open_position(self) -> Position | None:
        """The oldest durable position of the running pipelines (None: none has one)."""
        with self._lock:
            known = [d for r in self._members.values() if (d := r.durable()) is not None]
        result: Position | None = None
        for p in known:
            if result is None or positions.before(p, result):
                result = p
        return result

    def _poll_loop(self, src: Source[Any], start: Position | None) -> None:
        cfg = self.services.config
        batcher = Batcher(cfg.limits, start)
        self._last_ack = None  # a new Source instance: its acks start afresh
        self._last_fanned = start
        metrics = self.metrics
        while True:
            if self._stop.is_set():
                self._drain(src, batcher)
                raise Stopping
            self._reap()
            if not self._members:
                self._drain(src, batcher)
                raise Stopping
            self._ack(src)
            timeout = cfg.poll_timeout
            left = batcher.time_left()
            if left is not None:
                timeout = min(timeout, left)
            records = src.poll(timeout, cfg.max_poll_records)
            full = len(records) >= cfg.max_poll_records
            snap = self._snap
            # Snapshot rows join the stream at their high watermarks (DBLog, invariant 3).
            parts = snap.process(records) if snap is not None and snap.live else (records,)
            for part in parts:
                for batch in batcher.add(part, more_available=full):
                    self._fan_out(src, batch)
            if records:
                metrics.note_read([r for r in records if r.__class__ is ChangeEvent], 0)

    def _drain(self, src: Source[Any], batcher: Batcher) -> None:
        """Graceful end: hand over the open batch, let pipelines finish, ack, then return."""
        if self._abort.is_set():
            return
        tail = batcher.open_batch
        if tail.events or tail.position != self._last_fanned:
            self._fan_out(src, tail)
        for runner in list(self._members.values()):
            runner.finish()
        for runner in list(self._members.values()):
            while runner.alive and not self._abort.is_set():
                runner.join(0.1)
        if not self._abort.is_set():
            self._ack(src)  # before reaping: finished runners still report their positions
        self._reap()

    def _fan_out(self, src: Source[Any], batch: Batch) -> None:
        self.metrics.batches += 1
        self.metrics.bytes += batch.bytes
        self._last_fanned = batch.position
        for pid, runner in list(self._members.items()):
            while not runner.offer(batch, timeout=0.1):
                # Back-pressure: the source is not polled until this pipeline takes the batch.
                if self._abort.is_set():
                    raise Stopping
                if not runner.alive:
                    break
                self._ack(src)
            if not runner.alive:
                self._reap_one(pid, runner)

    def _reap(self) -> None:
        for pid, runner in list(self._members.items()):
            if not runner.alive:
                self._reap_one(pid, runner)

    def _reap_one(self, pid: str, runner: PipelineRunner) -> None:
        with self._lock:
            if self._members.get(pid) is not runner:
                return
            del self._members[pid]
            durable = runner.durable()
            if durable is not None:
                # It still needs everything after its checkpoint: keep holding the ack there.
                self._detached[pid] = durable
            if runner.failed is not None:
                self._failures.append((pid, runner.failed))

    def _ack(self, src: Source[Any]) -> None:
        with self._lock:
            held = [*self._pins.values(), *self._detached.values()]
            running = [r.durable() for r in self._members.values()]
        target = positions.oldest([*running, *held])
        if target is None or not running:
            return
        if self._last_ack is not None and not positions.before(self._last_ack, target):
            return
        # invariant 1: every pipeline has checkpointed up to target (durable() is only
        # updated after the checkpoint is stored) and no paused pipeline needs older data.
        src.ack(target)
        if self._snap is not None:
            self._snap.on_ack(target)  # snapshot progress may now be persisted
        self._last_ack = target

    def _finish_members(self) -> None:
        for runner in list(self._members.values()):
            runner.finish()
        deadline = time.monotonic() + self.services.config.drain_timeout
        for runner in list(self._members.values()):
            while runner.alive and not self._abort.is_set() and time.monotonic() < deadline:
                runner.join(0.1)
        if any(r.alive for r in self._members.values()):
            self._abort.set()
            for runner in self._members.values():
                runner.join(1.0)
        self._reap()
