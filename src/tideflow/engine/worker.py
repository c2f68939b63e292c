"""The data-plane worker: a supervisor that reconciles desired state with running units.

Every ``reconcile_interval`` it reads sources, destinations and pipelines from the metadata
store (:mod:`.plan`) and, per source: runs it (a :class:`SourceRunner` with one
:class:`PipelineRunner` per pipeline) when the source is Active and at least one of its
pipelines is Active (pipeline, source and destination all Active); restarts it when the
source's config or its set of runnable pipelines changes; stops it gracefully (flush,
checkpoint, ack, close) when nothing should run. Failed units restart after a backoff (1 s
doubling to 30 s, jittered), immediately when their config changes. Statuses of units that do
not run are written here; running units report their own.

In cluster mode an :class:`Assignment` (the worker's lease keeper, :mod:`.cluster`) narrows
the plan to the sources this worker holds leases on and fences their checkpoint writes.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import Protocol

from tideflow.engine import status
from tideflow.engine.checkpoints import Checkpoints
from tideflow.engine.config import RuntimeConfig, Services
from tideflow.engine.metrics import Metrics
from tideflow.engine.metrics import enabled as metrics_enabled
from tideflow.engine.observe import Sampler
from tideflow.engine.plan import ACTIVE, PAUSED, STOPPED, Connector, PipelinePlan, Plan, Planner
from tideflow.engine.positions import Position
from tideflow.engine.retry import Backoff
from tideflow.engine.source_runner import SourceRunner
from tideflow.store.crypto import SecretBox
from tideflow.store.db import Store

log = logging.getLogger(__name__)


# The data plane allocates several objects per change (event, row dict, position dict) and
# keeps tens of thousands alive in queued batches, so with the default thresholds (700, 10,
# 10) the cyclic collector ran every few hundred events and repeatedly walked the whole heap:
# measured at about a third of the server's CPU per row. Those objects form no cycles, so
# collecting less often frees nothing later; freezing moves the import-time heap (FastAPI,
# SQLAlchemy, pydantic models) out of every future full collection.
GC_THRESHOLDS = (50_000, 20, 10)


def tune_gc() -> None:
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class Assignment(Protocol):
    """Which sources this worker runs (cluster mode: those it holds a lease on).

    Called from the supervisor thread, once per reconcile, in this order: :meth:`take_lost`,
    :meth:`restrict`, then (after acting) :meth:`settled`.
    """

    def take_lost(self) -> set[str]:
        """Sources whose lease was lost since the last call: abort them, write nothing more."""
        ...

    def restrict(self, plan: Plan) -> Plan:
        """The part of ``plan`` to run here; sources left out are stopped gracefully."""
        ...

    def settled(self, running: set[str]) -> None:
        """The sources that still have a live runner (running or stopping)."""
        ...

    def checkpoints(self, source_id: str) -> Checkpoints:
        """Checkpoint store for a source's pipelines, fenced by the source's lease."""
        ...


@dataclass
class _Failure:
    backoff: Backoff
    retry_at: float
    fingerprint: str


class Worker:
    """Runs the units of the metadata store in this process.

    ``start()`` returns at once (a daemon supervisor thread); ``stop()`` stops every unit
    gracefully within ``drain_timeout`` and returns. ``metrics`` exposes per-unit counters.
    """

    def __init__(
        self,
        store: Store,
        secrets: SecretBox,
        *,
        worker_id: str,
        config: RuntimeConfig | None = None,
        assignment: Assignment | None = None,
        status_board: status.StatusBoard | None = None,
    ) -> None:
        self.store = store
        self.secrets = secrets
        self.worker_id = worker_id
        self.config = config or RuntimeConfig()
        self.assignment = assignment
        self.metrics = Metrics()
        self.status = status_board or status.StatusBoard(store, worker_id)
        self.services = Services(
            self.config,
            Checkpoints(store, generation=self.config.generation),
            self.status,
            self.metrics,
        )
        self._planner = Planner(store, secrets)
        self.sampler = Sampler(store, secrets, self.metrics) if metrics_enabled() else None
        self._groups: dict[str, SourceRunner] = {}
        self._stopping: list[SourceRunner] = []
        self._failures: dict[str, _Failure] = {}
        self._reported: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        tune_gc()
        self._thread = threading.Thread(target=self._loop, name="tideflow-supervisor", daemon=True)
        self._thread.start()
        if self.sampler is not None:
            self.sampler.start()

    def stop(self) -> None:
        self._stop.set()
        if self.sampler is not None:
            self.sampler.stop()
        if self._thread is not None:
            self._thread.join()
        runners = [*self._groups.values(), *self._stopping]
        self._groups.clear()
        self._stopping.clear()
        for r in runners:
            r.stop()
        deadline = time.monotonic() + self.config.drain_timeout
        for r in runners:
            while r.alive and time.monotonic() < deadline:
                r.join(0.1)
        for r in runners:
            if r.alive:
                r.abort()
                r.join(2.0)
        if self.assignment is not None:
            return  # the units were handed over (or their leases will expire): not "stopped"
        for unit in self._reported:
            current = self.status.get(unit)
            if current is not None and current[0] in (status.ACTIVE, status.STARTING):
                self.status.report(unit, status.STOPPED, f"worker {self.worker_id} stopped")

    def _loop(self) -> None:
        while True:
            try:
                self.reconcile()
            except Exception:
                log.exception("reconcile failed; retrying")
            if self._stop.wait(self.config.reconcile_interval):
                return

    def reconcile(self) -> None:
        """One pass: compare the store with what runs and act on the difference."""
        now = time.monotonic()
        if self.assignment is not None:
            for sid in self.assignment.take_lost():  # first: even if the store is unreachable
                self._abandon(sid)
        plan = everything = self._planner.load()
        if self.assignment is not None:
            plan = self.assignment.restrict(everything)
        self._reap(now)
        for sid, source in plan.sources.items():
            self._reconcile_source(plan, source, plan.pipelines.get(sid, []), now)
        for sid in [s for s in self._groups if s not in plan.sources]:
            self._retire(sid)
        self._forget_deleted(everything)
        if self.assignment is not None:
            self._reported &= _units(plan)  # units handed over are reported by their new owner
            running = set(self._groups) | {r.source.id for r in self._stopping}
            self.assignment.settled(running)
        self.status.flush()

    def _reap(self, now: float) -> None:
        for sid, runner in list(self._groups.items()):
            self._collect(runner)
            if not runner.alive:
                del self._groups[sid]
                if runner.failed is not None:
                    self._fail(status.source_unit(sid), runner.source.fingerprint, now)
            elif now - runner.started_at > self.config.healthy_after:
                # Running well for a while: later failures start the backoff over.
                self._failures.pop(status.source_unit(sid), None)
                running = {pid for pid, _ in runner.members()}
                for plan in runner.plans:
                    if plan.id in running:
                        self._failures.pop(plan.checkpoint_unit, None)
        for runner in list(self._stopping):
            self._collect(runner)
            if not runner.alive:
                self._stopping.remove(runner)
            elif now - (runner.stop_requested_at or now) > self.config.drain_timeout:
                runner.abort()

    def _collect(self, runner: SourceRunner) -> None:
        plans = {p.id: p for p in runner.plans}
        for pid, _ in runner.take_failures():
            plan = plans.get(pid)
            if plan is not None:
                self._fail(plan.checkpoint_unit, plan.fingerprint, time.monotonic())

    def _fail(self, key: str, fingerprint: str, now: float) -> None:
        failure = self._failures.get(key)
        if failure is None or failure.fingerprint != fingerprint:
            failure = self._failures[key] = _Failure(
                Backoff(self.config.retry_initial, self.config.retry_max), now, fingerprint
            )
        failure.retry_at = now + failure.backoff.next_delay()

    def _waiting(self, key: str, fingerprint: str, now: float) -> bool:
        failure = self._failures.get(key)
        if failure is None:
            return False
        if failure.fingerprint != fingerprint:  # the config changed: try it now
            del self._failures[key]
            return False
        return now < failure.retry_at

    def _abandon(self, sid: str) -> None:
        """Another worker owns the source now: stop at once, nothing in flight is kept."""
        runner = self._groups.pop(sid, None)
        if runner is not None:
            runner.abort()
            self._stopping.append(runner)
        self._failures.pop(status.source_unit(sid), None)

    def _retire(self, sid: str) -> None:
        runner = self._groups.pop(sid)
        runner.stop()
        self._stopping.append(runner)

    def _reconcile_source(
        self, plan: Plan, source: Connector, pipelines: list[PipelinePlan], now: float
    ) -> None:
        sid = source.id
        runnable = [
            p
            for p in pipelines
            if p.effective == ACTIVE
            and p.error is None
            and not self._waiting(p.checkpoint_unit, p.fingerprint, now)
        ]
        source_ok = (
            source.desired == ACTIVE
            and source.error is None
            and not self._waiting(status.source_unit(sid), source.fingerprint, now)
        )
        should_run = source_ok and bool(runnable)
        members = frozenset((p.id, p.fingerprint) for p in runnable)
        runner = self._groups.get(sid)
        if runner is not None:
            self._collect(runner)
            if not should_run or runner.key[0] != source.fingerprint or runner.members() != members:
                self._retire(sid)
                runner = None
            else:
                runner.update_pins(
                    self._pins(pipelines, {p.id for p in runnable}), {p.id for p in pipelines}
                )
        draining = any(r.source.id == sid for r in self._stopping)
        if runner is None and should_run and not draining:
            runner = SourceRunner(
                source,
                plan.source_info[sid],
                runnable,
                self._services_for(sid),
                self._pins(pipelines, {p.id for p in runnable}),
            )
            self._groups[sid] = runner
            runner.start()
            log.info(
                "started source %s with %d pipeline(s)",
                source.name,
                len(runnable),
                extra={"source": sid},
            )
        running = runner.members() if runner is not None else frozenset()
        self._report_idle(
            source, pipelines, runner is not None, draining, {pid for pid, _ in running}
        )

    def _services_for(self, sid: str) -> Services:
        if self.assignment is None:
            return self.services
        return replace(self.services, checkpoints=self.assignment.checkpoints(sid))

    def _pins(self, pipelines: list[PipelinePlan], running: set[str]) -> dict[str, Position]:
        """Checkpoints of the source's pipelines that will not read now (they hold the ack)."""
        idle = {p.checkpoint_unit: p.id for p in pipelines if p.id not in running}
        stored = self.services.checkpoints.load_many(list(idle))
        return {idle[unit]: position for unit, position in stored.items()}

    def _report_idle(
        self,
        source: Connector,
        pipelines: list[PipelinePlan],
        running: bool,
        draining: bool,
        members: set[str],
    ) -> None:
        now = time.monotonic()
        unit = status.source_unit(source.id)
        self._reported.add(unit)
        source_waiting = self._waiting(unit, source.fingerprint, now)
        if not running and not draining and not source_waiting:
            if source.error is not None:
                self.status.report(unit, status.BROKEN, source.error)
            elif source.desired in (PAUSED, STOPPED):
                self.status.report(unit, source.desired)
            else:
                self.status.report(unit, status.PAUSED, "no active pipeline reads this source")
        for p in pipelines:
            punit = status.pipeline_unit(p.id)
            self._reported.add(punit)
            if p.id in members or draining or self._waiting(p.checkpoint_unit, p.fingerprint, now):
                continue
            state, message = _idle_status(p, source, source_waiting, self.status.get(unit))
            self.status.report(punit, state, message, part=source.id)

    def _forget_deleted(self, plan: Plan) -> None:
        live = {status.source_unit(s) for s in plan.sources}
        live |= {status.pipeline_unit(p.id) for p in plan.all_pipelines()}
        gone = self._reported - live
        if gone:
            self.status.forget(gone)
            self._reported -= gone


def _units(plan: Plan) -> set[str]:
    units = {status.source_unit(s) for s in plan.sources}
    return units | {status.pipeline_unit(p.id) for p in plan.all_pipelines()}


def _idle_status(
    p: PipelinePlan, source: Connector, source_waiting: bool, source_status: tuple[str, str] | None
) -> tuple[str, str]:
    """Status and message of a pipeline that does not run, naming what holds it."""
    if p.error is not None:
        return status.BROKEN, p.error
    if p.effective in (PAUSED, STOPPED):
        if p.desired != ACTIVE:
            return p.effective, ""
        if source.desired != ACTIVE:
            return p.effective, f"source {source.name} is {source.desired.lower()}"
        return p.effective, f"destination {p.destination.name} is {p.destination.desired.lower()}"
    if source.error is not None or source_waiting:
        reason = source.error or (source_status[1] if source_status else "failed")
        return status.BROKEN, f"source {source.name} is broken: {reason}"
    return status.STARTING, ""
