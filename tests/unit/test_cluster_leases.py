"""Leases, takeovers and checkpoint fencing in the metadata store (engine/cluster/leases.py).

Run on SQLite and on a fresh Postgres metadata database: migration 0002 must apply on both.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect, select, text
from sqlalchemy.exc import DBAPIError

from tests.support import pg, stores
from tideflow.engine.checkpoints import Checkpoints, Saved
from tideflow.engine.cluster.leases import (
    SOURCE,
    ClusterConfig,
    Leases,
    bound_transactions,
    live_workers,
)
from tideflow.engine.errors import Fenced
from tideflow.store.db import Store
from tideflow.store.models.cluster import LeaseEvent
from tideflow.store.models.runtime import Checkpoint, UnitStatus

SHORT = ClusterConfig(lease_ttl=0.5, heartbeat_interval=0.1)


@pytest.fixture(params=stores.BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with stores.migrated(request.param, tmp_path, "tfcluster") as s:
        yield s


def test_migration_0002_creates_the_cluster_tables(store: Store) -> None:
    tables = set(inspect(store.engine).get_table_names())
    assert {"leases", "workers", "lease_events", "checkpoints"} <= tables
    with store.session() as s:
        assert s.scalar(text("SELECT version_num FROM alembic_version")) == "0002"
    store.migrate()  # idempotent


def test_a_held_lease_is_refused_and_an_expired_one_taken_over_with_a_new_generation(
    store: Store,
) -> None:
    a, b = Leases(store, "a", SHORT), Leases(store, "b", SHORT)
    assert a.acquire(SOURCE, "s1") == 1
    assert b.acquire(SOURCE, "s1") is None
    assert a.renew({(SOURCE, "s1"): 1}) == set()
    time.sleep(0.6)
    assert b.acquire(SOURCE, "s1") == 2
    assert a.renew({(SOURCE, "s1"): 1}) == {(SOURCE, "s1")}
    with store.session() as s:
        events = [(e.event, e.owner, e.generation, e.previous_owner) for e in s.scalars(
            select(LeaseEvent).order_by(LeaseEvent.id))]  # fmt: skip
        last = s.scalars(select(LeaseEvent).order_by(LeaseEvent.id.desc())).first()
    assert events == [("acquired", "a", 1, ""), ("takeover", "b", 2, "a")]
    assert last is not None and last.previous_renewed_at is not None


def test_a_worker_that_lost_its_lease_cannot_write_a_checkpoint(store: Store) -> None:
    a, b = Leases(store, "a", SHORT), Leases(store, "b", SHORT)
    lost: list[str] = []
    gen_a = a.acquire(SOURCE, "s1")
    assert gen_a == 1
    old = Checkpoints(store, fence=a.fence(SOURCE, "s1", gen_a, lambda: lost.append("a")))
    assert old.save("pipeline:p", {"lsn": 10})[0] is Saved.WRITTEN
    time.sleep(0.6)
    gen_b = b.acquire(SOURCE, "s1")
    assert gen_b == 2
    # Fenced even though the new owner has not written anything yet.
    with pytest.raises(Fenced):
        old.save("pipeline:p", {"lsn": 20})
    assert lost == ["a"]
    new = Checkpoints(store, fence=b.fence(SOURCE, "s1", gen_b, lambda: None))
    assert new.load("pipeline:p") == {"lsn": 10}
    assert new.save("pipeline:p", {"lsn": 15})[0] is Saved.WRITTEN
    with store.session() as s:
        row = s.get(Checkpoint, "pipeline:p")
        assert row is not None and (row.position, row.generation) == ({"lsn": 15}, 2)


def test_release_frees_the_unit_and_says_it_is_moving(store: Store) -> None:
    a, b = Leases(store, "a", ClusterConfig()), Leases(store, "b", ClusterConfig())
    assert a.acquire(SOURCE, "s1") == 1
    with store.session() as s:
        s.add(UnitStatus(unit="source:s1", status="Active", message="", worker="a"))
        s.add(UnitStatus(unit="pipeline:p", status="Paused", message="", worker="a"))
    assert a.release(SOURCE, "s1", 1, ["source:s1", "pipeline:p"], "drain")
    assert not a.release(SOURCE, "s1", 1, [], "twice")
    with store.session() as s:
        src, pipe = s.get(UnitStatus, "source:s1"), s.get(UnitStatus, "pipeline:p")
        assert src is not None and (src.status, src.worker) == ("Starting", "")
        assert pipe is not None and pipe.status == "Paused"  # only moving units change
    assert b.acquire(SOURCE, "s1") == 2  # free at once, no TTL to wait


def test_heartbeat_reports_a_drain_request_and_liveness_follows_the_ttl(store: Store) -> None:
    a = Leases(store, "a", SHORT)
    a.register(123)
    assert a.heartbeat(["s1"]) == "active"
    assert a.overview().live_workers == {"a"}
    a.set_state("draining")
    assert a.heartbeat(["s1"]) == "draining"
    assert a.overview().live_workers == frozenset()
    a.set_state("active")
    time.sleep(0.6)
    assert a.overview().live_workers == frozenset()
    # `tideflow serve` refuses its embedded worker while cluster workers heartbeat
    assert live_workers(store) == ["a"]
    a.set_state("stopped")
    assert live_workers(store) == []


def test_a_second_process_under_a_live_id_waits_for_the_first_ones_heartbeat_to_age(
    store: Store,
) -> None:
    first, second = Leases(store, "a", SHORT), Leases(store, "a", SHORT)
    assert first.register(100) == 0
    assert 0 < second.register(200) <= 0.5
    time.sleep(0.6)
    assert second.register(200) == 0  # the first one stopped heartbeating: the id is free
    assert first.register(200) == 0  # the same process registering again is not a conflict


def test_the_lease_of_a_deleted_unit_is_removed_on_release(store: Store) -> None:
    a = Leases(store, "a", ClusterConfig())
    assert a.acquire(SOURCE, "gone") == 1
    assert a.release(SOURCE, "gone", 1, [], "source deleted", gone=True)
    assert a.overview().leases == {}


def test_a_worker_frozen_inside_a_checkpoint_transaction_does_not_block_a_takeover() -> None:
    name = pg.create_database("tfcluster")
    frozen_store, other = Store(pg.url(name)), Store(pg.url(name))
    try:
        for s in (frozen_store, other):
            bound_transactions(s.engine)  # before the first connection
        frozen_store.migrate()
        a, b = Leases(frozen_store, "a", SHORT), Leases(other, "b", SHORT)
        assert a.acquire(SOURCE, "s1") == 1
        fence = a.fence(SOURCE, "s1", 1, lambda: None)
        errors: list[Exception] = []

        def frozen() -> None:
            try:
                with frozen_store.session() as s:
                    fence.generation(s, "pipeline:p")  # holds the lease row FOR SHARE ...
                    time.sleep(8)  # ... and freezes, idle in its transaction
                    s.execute(text("SELECT 1"))
            except DBAPIError as exc:
                errors.append(exc)

        worker = threading.Thread(target=frozen)
        worker.start()
        time.sleep(0.7)  # the lease expires while the transaction is frozen
        started = time.monotonic()
        assert b.acquire(SOURCE, "s1") == 2  # the server ended the frozen session
        assert time.monotonic() - started < 5
        worker.join()
        assert errors, "the frozen transaction must have been ended by the server"
    finally:
        frozen_store.dispose()
        other.dispose()
        pg.drop_database(name)
