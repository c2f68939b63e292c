"""The lease keeper of one worker: heartbeat, renew, claim, hand over (``docs/cluster.md``).

Its thread makes every lease round trip, once per ``heartbeat_interval``; the supervisor
(:class:`~tideflow.engine.worker.Worker`) asks it, once per reconcile, which part of the plan
to run (:meth:`Keeper.restrict`), which units to abort at once (:meth:`Keeper.take_lost`) and
tells it which units still run (:meth:`Keeper.settled`), so that a unit handed over is released
only after its runner stopped gracefully (flushed and checkpointed).

Units are named by *runner id*, the key of the plan's ``sources`` the supervisor runs: a source
id (lease kind ``source``) or, in log mode, ``log:<pipeline id>`` (lease kind ``pipeline``),
see :mod:`.logmode`. Assignment balances each kind on its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from datetime import timedelta

from tideflow.engine import status
from tideflow.engine.checkpoints import Checkpoints
from tideflow.engine.cluster import logmode
from tideflow.engine.cluster.assignment import decide
from tideflow.engine.cluster.leases import (
    DRAINING,
    PIPELINE,
    SOURCE,
    STOPPED,
    ClusterConfig,
    Leases,
    Overview,
)
from tideflow.engine.cluster.logmode import key_of, runner_of
from tideflow.engine.plan import Plan
from tideflow.store.db import Store

log = logging.getLogger(__name__)


class GuardedStatusBoard(status.StatusBoard):
    """A status board that only writes units whose lease this worker holds: a worker that
    lost a unit never overwrites what the new owner reports."""

    def __init__(self, store: Store, worker_id: str) -> None:
        super().__init__(store, worker_id)
        self.keeper: Keeper | None = None
        self._plumbing: dict[str, tuple[str, str]] = {}

    def report(self, unit: str, status: str, message: str = "", *, part: str | None = None) -> None:
        if logmode.hidden(unit):
            # Never written, but kept: a pipeline whose log reader failed shows the reason
            # (e.g. a gap in the log, invariant 5) through the worker's idle status.
            with self._lock:
                self._plumbing[unit] = (status, message)
            return
        if self.keeper is not None and not self.keeper.owns(unit, part):
            return
        super().report(unit, status, message, part=part)

    def get(self, unit: str) -> tuple[str, str] | None:
        if logmode.hidden(unit):
            with self._lock:
                return self._plumbing.get(unit)
        return super().get(unit)

    def forget(self, units: set[str]) -> None:
        with self._lock:
            for u in units:
                self._plumbing.pop(u, None)
        super().forget({u for u in units if not logmode.hidden(u)})

    def reassert(self, units: list[str]) -> None:
        """Write the current statuses of ``units`` again on the next flush (another worker
        may have overwritten their rows, see :meth:`Keeper._round`)."""
        with self._lock:
            for u in units:
                self._written.pop(u, None)

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
        self._held: dict[str, int] = {}  # runner id → lease generation
        self._releasing: set[str] = set()
        self._lost: set[str] = set()
        self._running: set[str] = set()
        self._candidates: dict[str, list[str]] | None = None  # kind → unit ids; None: no plan yet
        self._units: dict[str, list[str]] = {}  # runner id → its status units
        self._pipeline_sources: dict[str, set[str]] = defaultdict(set)
        self._draining = False
        self._marked: set[tuple[str, str, str, int]] = set()
        # When the last successful renewal started: every held lease lives at least until
        # this + lease_ttl by the store's clock (write-side fencing, may_write).
        self._last_renewed = time.monotonic()
        self._notes: list[tuple[str, int, str]] = []
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="tideflow-leases", daemon=True)

    # --- supervisor side --------------------------------------------------------------------

    def restrict(self, plan: Plan) -> Plan:
        """Observe the whole plan; return the part this worker runs (held, not handed over)."""
        cfg = self.config
        if cfg.log_mode:
            plan = logmode.layout(plan, cfg.log_bootstrap, cfg.log_partitions)
        units: dict[str, list[str]] = {}
        pipeline_sources: dict[str, set[str]] = defaultdict(set)
        candidates: dict[str, list[str]] = {SOURCE: [], PIPELINE: []}
        for rid in plan.sources:
            pipes = plan.pipelines.get(rid, [])
            shown = [status.source_unit(rid), *(status.pipeline_unit(p.id) for p in pipes)]
            units[rid] = [u for u in shown if not logmode.hidden(u)]
            for p in pipes:
                pipeline_sources[status.pipeline_unit(p.id)].add(rid)
            kind, unit_id = key_of(rid)
            candidates[kind].append(unit_id)
        with self._lock:
            self._candidates = {k: sorted(v) for k, v in candidates.items()}
            self._units = units
            self._pipeline_sources = pipeline_sources
            run = [r for r in plan.sources if r in self._held and r not in self._releasing]
        out = Plan()
        for rid in run:
            out.sources[rid] = plan.sources[rid]
            out.source_info[rid] = plan.source_info[rid]
            if rid in plan.pipelines:
                out.pipelines[rid] = plan.pipelines[rid]
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

    def checkpoints(self, runner_id: str) -> Checkpoints:
        with self._lock:
            generation = self._held.get(runner_id, -1)  # lost meanwhile: every write is fenced
        kind, unit_id = key_of(runner_id)

        def may_write() -> bool:
            # Per unit: the round that tells a woken worker it lost this unit also renews its
            # other leases, after which the worker-wide clock says "write" again, while this
            # unit's runner may still run until the supervisor aborts it.
            with self._lock:
                held = self._held.get(runner_id) == generation
            return held and self.may_write()

        fence = self.leases.fence(
            kind,
            unit_id,
            generation,
            lambda: self._lose(runner_id, generation, "fenced"),
            may_write,
        )
        return Checkpoints(self.store, fence=fence)

    def may_write(self) -> bool:
        """Write-side fencing: False once the leases may have expired by this worker's clock
        (no renewal since ``lease_ttl`` minus one heartbeat), e.g. after the process was frozen;
        True again after the next successful renewal."""
        margin = self.config.heartbeat_interval
        return time.monotonic() < self._last_renewed + self.config.lease_ttl - margin

    def owns(self, unit: str, part: str | None) -> bool:
        with self._lock:
            if part is not None:
                return part in self._held
            if unit.startswith("source:"):
                return unit.removeprefix("source:") in self._held
            return any(r in self._held for r in self._pipeline_sources.get(unit, ()))

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
        started = time.monotonic()
        state = self.leases.heartbeat(list(held))
        if state == DRAINING:
            with self._lock:
                self._draining = True
        for key in self.leases.renew({key_of(r): g for r, g in held.items()}):
            lost = runner_of(*key)
            self._lose(lost, held[lost], "lease taken over")
        if started - self._last_renewed > self.config.lease_ttl:
            # Our leases outlived their TTL (process frozen, store slow): another worker may
            # have shown their units as moving (mark_orphaned) without taking them, and the
            # renewal just kept them. Write their statuses again, or they stay Starting.
            with self._lock:
                kept = [u for rid in self._held for u in self._units.get(rid, [])]
            self.board.reassert(kept)
        self._last_renewed = started
        with self._lock:
            notes, self._notes = self._notes, []
        for rid, lost_generation, why in notes:
            self.leases.note_lost(*key_of(rid), lost_generation, why)
        released = self._release_settled()
        with self._lock:
            candidates, draining = self._candidates, self._draining
        if draining and not self.held():
            self.leases.set_state(STOPPED)
            self.drained.set()
            return
        if candidates is None:
            return
        view = self.leases.overview()
        for kind, unit_ids in candidates.items():
            self._assign(kind, unit_ids, view, draining, released)
        self._mark_orphans(view)

    def _assign(
        self, kind: str, unit_ids: list[str], view: Overview, draining: bool, released: set[str]
    ) -> None:
        mine = {u for k, u in map(key_of, self.held()) if k == kind}
        decision = decide(
            self.leases.owner,
            kind,
            unit_ids,
            mine,
            view,
            orphan_after=timedelta(seconds=2 * self.config.heartbeat_interval),
            draining=draining,
        )
        for unit_id in decision.claim:
            if runner_of(kind, unit_id) in released:
                continue  # just handed over (a slow round can see it as orphaned already)
            lease = view.leases.get((kind, unit_id))
            reclaim = lease is not None and lease.owner == self.leases.owner
            generation = self.leases.acquire(kind, unit_id, reclaim_own=reclaim)
            if generation is not None:
                rid = runner_of(kind, unit_id)
                with self._lock:
                    self._held[rid] = generation
                    units = self._units.get(rid, [])
                self.board.drop(units)
        if decision.shed:
            with self._lock:
                shed = {runner_of(kind, u) for u in decision.shed}
                self._releasing |= shed & set(self._held)
            self._release_settled()

    def _release_settled(self) -> set[str]:
        """Release the leases of handed-over units whose runners stopped; returns them."""
        with self._lock:
            ready = [
                (rid, self._held[rid], self._units.get(rid, []))
                for rid in self._releasing - self._running
                if rid in self._held
            ]
            why = "worker draining" if self._draining else "rebalancing"
            known = {(k, u) for k, us in (self._candidates or {}).items() for u in us}
        for rid, generation, units in ready:
            kind, unit_id = key_of(rid)
            gone = (kind, unit_id) not in known
            detail = f"{kind} deleted" if gone else f"{why} ({self.leases.owner})"
            self.leases.release(kind, unit_id, generation, units, detail, gone=gone)
            with self._lock:
                self._held.pop(rid, None)
                self._releasing.discard(rid)
            self.board.drop(units)
        return {rid for rid, _, _ in ready}

    def _mark_orphans(self, view: Overview) -> None:
        for (kind, unit_id), lease in view.leases.items():
            if not lease.owner or lease.owner in view.live_workers:
                continue
            if lease.owner == self.leases.owner or lease.expires_at > view.now:
                continue
            key = (lease.owner, kind, unit_id, lease.generation)
            if key in self._marked:
                continue
            with self._lock:
                units = self._units.get(runner_of(kind, unit_id), [])
            self.leases.mark_orphaned(lease.owner, units)
            self._marked.add(key)

    def _lose(self, rid: str, generation: int, why: str) -> None:
        with self._lock:
            if self._held.get(rid) != generation:
                return
            del self._held[rid]
            self._releasing.discard(rid)
            self._lost.add(rid)
            units = self._units.get(rid, [])
            self._notes.append((rid, generation, why))
        self.board.drop(units)
        log.warning("lost %s %s (generation %d): %s", *key_of(rid), generation, why)
        self._wake.set()  # record it from the keeper thread, outside the caller's transaction

    def _expire_if_stale(self) -> None:
        """Without a renewal for a whole TTL the leases may be someone else's: stop writing."""
        if time.monotonic() - self._last_renewed <= self.config.lease_ttl:
            return
        for rid, generation in self.held().items():
            self._lose(rid, generation, "could not renew the lease in time")
