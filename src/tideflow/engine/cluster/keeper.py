"""The lease keeper of one worker: heartbeat, renew, claim, hand over (``docs/cluster.md``).

Its thread makes every lease round trip, once per ``heartbeat_interval``; the supervisor
(:class:`~tideflow.engine.worker.Worker`) asks it, once per reconcile, which part of the plan
to run (:meth:`Keeper.restrict`), which units to abort at once (:meth:`Keeper.take_lost`) and
tells it which units still run (:meth:`Keeper.settled`), so that a unit handed over is released
only after its runner stopped gracefully (flushed and checkpointed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from datetime import timedelta

from tideflow.engine import status
from tideflow.engine.checkpoints import Checkpoints
from tideflow.engine.cluster.assignment import decide
from tideflow.engine.cluster.leases import (
    DRAINING,
    SOURCE,
    STOPPED,
    ClusterConfig,
    Leases,
    Overview,
)
from tideflow.engine.plan import Plan
from tideflow.store.db import Store

log = logging.getLogger(__name__)


class GuardedStatusBoard(status.StatusBoard):
    """A status board that only writes units whose lease this worker holds: a worker that
    lost a unit never overwrites what the new owner reports."""

    def __init__(self, store: Store, worker_id: str) -> None:
        super().__init__(store, worker_id)
        self.keeper: Keeper | None = None

    def report(self, unit: str, status: str, message: str = "", *, part: str | None = None) -> None:
        if self.keeper is not None and not self.keeper.owns(unit, part):
            return
        super().report(unit, status, message, part=part)

    def drop(self, units: list[str]) -> None:
        """Forget what was reported or written for ``units`` (their rows changed elsewhere)."""
        with self._lock:
            for u in units:
                self._wanted.pop(u, None)
                self._written.pop(u, None)
                self._parts.pop(u, None)


class Keeper:
    def __init__(
        self, store: Store, leases: Leases, config: ClusterConfig, board: GuardedStatusBoard
    ) -> None:
        self.store = store
        self.leases = leases
        self.config = config
        self.board = board
        board.keeper = self
        self.drained = threading.Event()
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}  # source id → lease generation
        self._releasing: set[str] = set()
        self._lost: set[str] = set()
        self._running: set[str] = set()
        self._candidates: list[str] | None = None  # None until the first plan is seen
        self._units: dict[str, list[str]] = {}  # source id → its status units
        self._pipeline_sources: dict[str, set[str]] = defaultdict(set)
        self._draining = False
        self._marked: set[tuple[str, str, int]] = set()
        self._last_renewed = time.monotonic()
        self._notes: list[tuple[str, int, str]] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tideflow-leases", daemon=True)

    # --- supervisor side --------------------------------------------------------------------

    def restrict(self, plan: Plan) -> Plan:
        """Observe the whole plan; return the part this worker runs (held, not handed over)."""
        units: dict[str, list[str]] = {}
        pipeline_sources: dict[str, set[str]] = defaultdict(set)
        for sid in plan.sources:
            pipes = plan.pipelines.get(sid, [])
            units[sid] = [status.source_unit(sid), *(status.pipeline_unit(p.id) for p in pipes)]
            for p in pipes:
                pipeline_sources[status.pipeline_unit(p.id)].add(sid)
        with self._lock:
            self._candidates = sorted(plan.sources)
            self._units = units
            self._pipeline_sources = pipeline_sources
            run = [sid for sid in plan.sources if sid in self._held and sid not in self._releasing]
        out = Plan()
        for sid in run:
            out.sources[sid] = plan.sources[sid]
            out.source_info[sid] = plan.source_info[sid]
            if sid in plan.pipelines:
                out.pipelines[sid] = plan.pipelines[sid]
        return out

    def take_lost(self) -> set[str]:
        with self._lock:
            lost, self._lost = self._lost, set()
            return lost

    def settled(self, running: set[str]) -> None:
        with self._lock:
            self._running = set(running)
            ready = bool(self._releasing - self._running)
        if ready:
            self._wake.set()

    def checkpoints(self, source_id: str) -> Checkpoints:
        with self._lock:
            generation = self._held.get(source_id, -1)  # lost meanwhile: every write is fenced
        fence = self.leases.fence(
            SOURCE, source_id, generation, lambda: self._lose(source_id, generation, "fenced")
        )
        return Checkpoints(self.store, fence=fence)

    def owns(self, unit: str, part: str | None) -> bool:
        with self._lock:
            if part is not None:
                return part in self._held
            if unit.startswith("source:"):
                return unit.removeprefix("source:") in self._held
            return any(sid in self._held for sid in self._pipeline_sources.get(unit, ()))

    def held(self) -> dict[str, int]:
        with self._lock:
            return dict(self._held)

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def drain(self) -> None:
        """Hand every unit over gracefully and take no new one (also on SIGTERM)."""
        if self.drained.is_set():
            return
        with self._lock:
            self._draining = True
        try:
            self.leases.set_state(DRAINING)
        except Exception:
            log.warning("could not record the drain in the store", exc_info=True)
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(10)

    # --- keeper thread ----------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._round()
            except Exception:
                log.warning("lease round failed; retrying", exc_info=True)
                self._expire_if_stale()
            self._wake.wait(self.config.heartbeat_interval)
            self._wake.clear()

    def _round(self) -> None:
        held = self.held()
        state = self.leases.heartbeat(list(held))
        if state == DRAINING:
            with self._lock:
                self._draining = True
        for _, lost in self.leases.renew({(SOURCE, s): g for s, g in held.items()}):
            self._lose(lost, held[lost], "lease taken over")
        self._last_renewed = time.monotonic()
        with self._lock:
            notes, self._notes = self._notes, []
        for unit_id, lost_generation, why in notes:
            self.leases.note_lost(SOURCE, unit_id, lost_generation, why)
        self._release_settled()
        with self._lock:
            candidates, draining = self._candidates, self._draining
        if draining and not self.held():
            self.leases.set_state(STOPPED)
            self.drained.set()
            return
        if candidates is None:
            return
        view = self.leases.overview()
        decision = decide(
            self.leases.owner,
            SOURCE,
            candidates,
            set(self.held()),
            view,
            orphan_after=timedelta(seconds=2 * self.config.heartbeat_interval),
            draining=draining,
        )
        for sid in decision.claim:
            lease = view.leases.get((SOURCE, sid))
            reclaim = lease is not None and lease.owner == self.leases.owner
            generation = self.leases.acquire(SOURCE, sid, reclaim_own=reclaim)
            if generation is not None:
                with self._lock:
                    self._held[sid] = generation
                    units = self._units.get(sid, [])
                self.board.drop(units)
        if decision.shed:
            with self._lock:
                self._releasing |= set(decision.shed) & set(self._held)
            self._release_settled()
        self._mark_orphans(view)

    def _release_settled(self) -> None:
        with self._lock:
            ready = [
                (sid, self._held[sid], self._units.get(sid, []))
                for sid in self._releasing - self._running
                if sid in self._held
            ]
            why = "worker draining" if self._draining else "rebalancing"
            known = set(self._candidates or ())
        for sid, generation, units in ready:
            gone = sid not in known
            detail = "source deleted" if gone else f"{why} ({self.leases.owner})"
            self.leases.release(SOURCE, sid, generation, units, detail, gone=gone)
            with self._lock:
                self._held.pop(sid, None)
                self._releasing.discard(sid)
            self.board.drop(units)

    def _mark_orphans(self, view: Overview) -> None:
        for (kind, sid), lease in view.leases.items():
            if kind != SOURCE or not lease.owner or lease.owner in view.live_workers:
                continue
            if lease.owner == self.leases.owner or lease.expires_at > view.now:
                continue
            key = (lease.owner, sid, lease.generation)
            if key in self._marked:
                continue
            with self._lock:
                units = self._units.get(sid, [])
            self.leases.mark_orphaned(lease.owner, units)
            self._marked.add(key)

    def _lose(self, sid: str, generation: int, why: str) -> None:
        with self._lock:
            if self._held.get(sid) != generation:
                return
            del self._held[sid]
            self._releasing.discard(sid)
            self._lost.add(sid)
            units = self._units.get(sid, [])
            self._notes.append((sid, generation, why))
        self.board.drop(units)
        log.warning("lost source %s (generation %d): %s", sid, generation, why)
        self._wake.set()  # record it from the keeper thread, outside the caller's transaction

    def _expire_if_stale(self) -> None:
        """Without a renewal for a whole TTL the leases may be someone else's: stop writing."""
        if time.monotonic() - self._last_renewed <= self.config.lease_ttl:
            return
        for sid, generation in self.held().items():
            self._lose(sid, generation, "could not renew the lease in time")
