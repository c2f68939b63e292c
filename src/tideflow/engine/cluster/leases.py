"""Leases on units and worker heartbeats in the metadata store (``docs/cluster.md``).

Every operation is one short transaction. Times are the metadata store's clock (Postgres
``clock_timestamp()``), so workers on hosts whose clocks disagree still agree on expiry.

Fencing: a unit's ``generation`` grows by one on every change of owner, inside the transaction
that changes the owner (``SELECT … FOR UPDATE`` on the lease row). A checkpoint write reads the
lease row ``FOR SHARE`` in its own transaction and is refused unless the writer is still the
owner with the same generation, so a takeover and a write of the old owner can never both
commit (:class:`LeaseFence`).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, event, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tideflow.engine.errors import Fenced
from tideflow.store.db import Store
from tideflow.store.models.cluster import Lease, LeaseEvent, WorkerRow
from tideflow.store.models.runtime import UnitStatus

log = logging.getLogger(__name__)

SOURCE = "source"  # a source reader and the pipelines it feeds (log mode: and the log writer)
PIPELINE = "pipeline"  # log mode: one pipeline, reading the source's topics
ACTIVE, DRAINING, STOPPED = "active", "draining", "stopped"


@dataclass(frozen=True)
class ClusterConfig:
    """Lease timing. A dead worker's units are taken over at most about
    ``lease_ttl + heartbeat_interval`` seconds after its last heartbeat."""

    lease_ttl: float = 10.0
    heartbeat_interval: float = 2.0
    # Log mode (on unless TIDEFLOW_CLUSTER_LOG=off): sources write per-table Kafka topics and
    # every pipeline is its own unit reading them (.logmode). All workers must agree.
    log_mode: bool = field(
        default_factory=lambda: (
            os.environ.get("TIDEFLOW_CLUSTER_LOG", "on").lower() not in ("off", "0", "false", "no")
        )
    )
    log_bootstrap: str = field(
        default_factory=lambda: os.environ.get("TIDEFLOW_LOG_BOOTSTRAP", "127.0.0.1:9092")
    )
    log_partitions: int = field(
        default_factory=lambda: int(os.environ.get("TIDEFLOW_LOG_PARTITIONS", "1"))
    )


@dataclass(frozen=True)
class LeaseView:
    kind: str
    unit_id: str
    owner: str
    generation: int
    expires_at: datetime
    renewed_at: datetime


@dataclass(frozen=True)
class Overview:
    """One consistent look at the cluster for an assignment round."""

    now: datetime
    live_workers: frozenset[str]  # heartbeating and active (not draining)
    leases: dict[tuple[str, str], LeaseView]


def aware(dt: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything is stored in UTC.
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def db_now(session: Session) -> datetime:
    if session.get_bind().dialect.name == "postgresql":
        now = session.scalar(text("SELECT clock_timestamp()"))
        assert isinstance(now, datetime)
        return aware(now)
    return datetime.now(UTC)


class Leases:
    """The lease and heartbeat operations of one worker (``owner``)."""

    def __init__(self, store: Store, owner: str, config: ClusterConfig) -> None:
        self.store = store
        self.owner = owner
        self.ttl = timedelta(seconds=config.lease_ttl)

    def heartbeat(self, units: list[str]) -> str:
        """Record that this worker is alive and what it runs; returns its ``state`` (a drain
        request shows up here)."""
        with self.store.session() as s:
            now = db_now(s)
            row = s.get(WorkerRow, self.owner, with_for_update=True)
            if row is None:
                row = WorkerRow(
                    id=self.owner, host=socket.gethostname(), state=ACTIVE, started_at=now
                )
                s.add(row)
            row.last_seen = now
            row.units = sorted(units)
            return row.state

    def register(self, pid: int) -> float:
        """Start a worker process under this id: active again, whatever its past state.

        Returns 0, or the seconds to wait first while another process (another pid or host)
        still heartbeats under the same id: two processes with one id would take each
        other's leases back and forth.
        """
        host = socket.gethostname()
        with self.store.session() as s:
            now = db_now(s)
            row = s.get(WorkerRow, self.owner, with_for_update=True)
            if row is None:
                row = WorkerRow(id=self.owner, units=[])
                s.add(row)
            elif row.state != STOPPED and (row.pid, row.host) != (pid, host):
                left = (aware(row.last_seen) + self.ttl - now).total_seconds()
                if left > 0:
                    return left
            row.host, row.pid, row.state = host, pid, ACTIVE
            row.started_at = row.last_seen = now
            return 0.0

    def set_state(self, state: str) -> None:
        set_worker_state(self.store, self.owner, state)

    def renew(self, held: dict[tuple[str, str], int]) -> set[tuple[str, str]]:
        """Extend the leases this worker holds; returns those it no longer holds."""
        if not held:
            return set()
        lost = set()
        with self.store.session() as s:
            now = db_now(s)
            for (kind, unit_id), generation in held.items():
                done = s.execute(
                    update(Lease)
                    .where(
                        Lease.kind == kind,
                        Lease.unit_id == unit_id,
                        Lease.owner == self.owner,
                        Lease.generation == generation,
                    )
                    .values(expires_at=now + self.ttl, renewed_at=now)
                )
                if getattr(done, "rowcount", 1) == 0:
                    lost.add((kind, unit_id))
        return lost

    def overview(self) -> Overview:
        with self.store.session() as s:
            now = db_now(s)
            workers = s.scalars(select(WorkerRow).where(WorkerRow.state == ACTIVE)).all()
            live = frozenset(w.id for w in workers if aware(w.last_seen) + self.ttl > now)
            leases = {
                (r.kind, r.unit_id): LeaseView(
                    r.kind,
                    r.unit_id,
                    r.owner,
                    r.generation,
                    aware(r.expires_at),
                    aware(r.renewed_at),
                )
                for r in s.scalars(select(Lease))
            }
        return Overview(now, live, leases)

    def acquire(self, kind: str, unit_id: str, *, reclaim_own: bool = False) -> int | None:
        """Take the unit if it is free, expired (or, with ``reclaim_own``, held under this
        worker's id by an earlier process); returns the new generation, None if it is held."""
        try:
            with self.store.session() as s:
                now = db_now(s)
                row = s.get(Lease, (kind, unit_id), with_for_update=True)
                if row is None:
                    row = Lease(kind=kind, unit_id=unit_id, generation=0, owner="")
                    s.add(row)
                    previous, previous_renewed = "", None
                else:
                    free = row.owner == "" or aware(row.expires_at) <= now
                    if not (free or (reclaim_own and row.owner == self.owner)):
                        return None
                    previous, previous_renewed = row.owner, aware(row.renewed_at)
                row.owner = self.owner
                row.generation = (row.generation or 0) + 1
                row.acquired_at = row.renewed_at = now
                row.expires_at = now + self.ttl
                s.add(
                    LeaseEvent(
                        kind=kind,
                        unit_id=unit_id,
                        event="takeover" if previous else "acquired",
                        owner=self.owner,
                        generation=row.generation,
                        previous_owner=previous,
                        previous_renewed_at=previous_renewed if previous else None,
                        at=now,
                    )
                )
                generation = row.generation
        except IntegrityError:
            return None  # another worker created the lease row first
        log.info("took %s %s (generation %d)", kind, unit_id, generation)
        return generation

    def release(
        self,
        kind: str,
        unit_id: str,
        generation: int,
        units: list[str],
        detail: str,
        *,
        gone: bool = False,
    ) -> bool:
        """Hand the unit over (after it stopped gracefully): the lease is free at once and the
        unit's statuses say it is moving, in one transaction. The lease of a unit that no
        longer exists (``gone``) is deleted."""
        with self.store.session() as s:
            now = db_now(s)
            row = s.get(Lease, (kind, unit_id), with_for_update=True)
            if row is None or row.owner != self.owner or row.generation != generation:
                return False
            row.owner = ""
            row.expires_at = now
            if gone:
                s.delete(row)
            s.add(
                LeaseEvent(
                    kind=kind,
                    unit_id=unit_id,
                    event="released",
                    owner=self.owner,
                    generation=generation,
                    at=now,
                    detail=detail,
                )
            )
            mark_moving(s, units, self.owner, f"moving to another worker: {detail}")
        log.info("released %s %s (%s)", kind, unit_id, detail)
        return True

    def note_lost(self, kind: str, unit_id: str, generation: int, detail: str) -> None:
        try:
            with self.store.session() as s:
                s.add(
                    LeaseEvent(
                        kind=kind,
                        unit_id=unit_id,
                        event="lost",
                        owner=self.owner,
                        generation=generation,
                        at=db_now(s),
                        detail=detail,
                    )
                )
        except Exception:
            log.warning("could not record the loss of %s %s", kind, unit_id, exc_info=True)

    def mark_orphaned(self, dead_owner: str, units: list[str]) -> None:
        """Statuses of units whose owner stopped heartbeating: Starting until someone takes
        them (only rows that owner wrote, so a new owner's report is never overwritten)."""
        with self.store.session() as s:
            mark_moving(s, units, dead_owner, f"worker {dead_owner} stopped heartbeating; moving")

    def fence(
        self,
        kind: str,
        unit_id: str,
        generation: int,
        on_lost: Callable[[], None],
        may_write: Callable[[], bool] | None = None,
    ) -> LeaseFence:
        return LeaseFence(self.owner, kind, unit_id, generation, on_lost, may_write)


# A worker frozen or cut off in the middle of a transaction (after the fence's FOR SHARE, say)
# would hold its row locks until TCP gives up, and a takeover waits on those locks: Postgres
# ends such a session after a few idle seconds, well inside the lease TTL.
SESSION_SETTINGS = {"idle_in_transaction_session_timeout": "3s", "lock_timeout": "5s"}


def bound_transactions(engine: Engine) -> None:
    """Apply :data:`SESSION_SETTINGS` to every Postgres connection of a worker's store."""
    if engine.dialect.name != "postgresql":
        return

    @event.listens_for(engine, "connect")
    def _settings(dbapi_conn: Any, _: Any) -> None:
        autocommit = dbapi_conn.autocommit
        dbapi_conn.autocommit = True
        with dbapi_conn.cursor() as cur:
            for name, value in SESSION_SETTINGS.items():
                cur.execute(f"SET {name} = '{value}'")
        dbapi_conn.autocommit = autocommit


def mark_moving(s: Session, units: list[str], previous_owner: str, message: str) -> None:
    if not units:
        return
    s.execute(
        update(UnitStatus)
        .where(
            UnitStatus.unit.in_(units),
            UnitStatus.worker == previous_owner,
            UnitStatus.status.in_(("Active", "Starting")),
        )
        .values(status="Starting", message=message, worker="")
    )


def live_workers(store: Store, within: timedelta = timedelta(seconds=60)) -> list[str]:
    """Cluster workers that heartbeated within ``within`` and take units."""
    with store.session() as s:
        now = db_now(s)
        rows = s.scalars(select(WorkerRow).where(WorkerRow.state != STOPPED)).all()
        return sorted(w.id for w in rows if aware(w.last_seen) + within > now)


def set_worker_state(store: Store, worker_id: str, state: str) -> bool:
    with store.session() as s:
        row = s.get(WorkerRow, worker_id, with_for_update=True)
        if row is None:
            return False
        row.state = state
        return True


class LeaseFence:
    """The :class:`~tideflow.engine.checkpoints.Fence` of one held lease.

    ``may_write()`` is the write-side fence: False while the lease may have expired by this
    worker's own clock (no renewal for ``lease_ttl`` minus a margin); the pipeline runner does
    not start a destination write until it is True again (renewed) or the unit is aborted.
    """

    def __init__(
        self,
        owner: str,
        kind: str,
        unit_id: str,
        generation: int,
        on_lost: Callable[[], None],
        may_write: Callable[[], bool] | None = None,
    ) -> None:
        self.owner = owner
        self.kind = kind
        self.unit_id = unit_id
        self.held_generation = generation
        self.on_lost = on_lost
        self.may_write = may_write or (lambda: True)

    @property
    def token(self) -> tuple[str, int]:
        """(unit, generation) for storage-side fencing in destinations."""
        return f"{self.kind}:{self.unit_id}", self.held_generation

    def generation(self, session: Session, unit_name: str) -> int:
        # FOR SHARE: a takeover (FOR UPDATE on this row) waits for this write to commit, and
        # this write waits for a takeover in progress, then sees the new owner.
        row = session.execute(
            select(Lease.owner, Lease.generation)
            .where(Lease.kind == self.kind, Lease.unit_id == self.unit_id)
            .with_for_update(read=True)
        ).one_or_none()
        if row is None or row.owner != self.owner or row.generation != self.held_generation:
            self.on_lost()
            holder = f"{row.owner or 'nobody'} (generation {row.generation})" if row else "nobody"
            raise Fenced(
                f"{self.kind} {self.unit_id} is now held by {holder}; this worker "
                f"({self.owner}, generation {self.held_generation}) may not write {unit_name}"
            )
        return self.held_generation
