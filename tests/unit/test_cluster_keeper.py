"""Lease keepers of several workers sharing one store (engine/cluster/keeper.py).

Rounds are driven by hand (no threads), on a SQLite store, with a short TTL.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tideflow.engine.cluster.keeper import GuardedStatusBoard, Keeper
from tideflow.engine.cluster.leases import SOURCE, ClusterConfig, Leases
from tideflow.engine.errors import Fenced
from tideflow.engine.plan import Connector, Plan
from tideflow.envelope import SourceInfo
from tideflow.store.db import Store
from tideflow.store.models.cluster import WorkerRow
from tideflow.store.models.runtime import UnitStatus

CONFIG = ClusterConfig(lease_ttl=0.6, heartbeat_interval=0.1)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path}/meta.db")
    s.migrate()
    return s


def plan(*source_ids: str) -> Plan:
    p = Plan()
    for sid in source_ids:
        p.sources[sid] = Connector(sid, sid, "postgresql", "Active", None, None, sid)
        p.source_info[sid] = SourceInfo("postgresql", sid, None)
    return p


def keeper(store: Store, worker_id: str, config: ClusterConfig = CONFIG) -> Keeper:
    leases = Leases(store, worker_id, config)
    leases.register(1)
    return Keeper(store, leases, config, GuardedStatusBoard(store, worker_id))


def rounds(*keepers: Keeper, n: int = 3) -> None:
    for _ in range(n):
        for k in keepers:
            k._round()


def test_units_are_shared_and_the_plan_narrowed_to_the_held_ones(store: Store) -> None:
    a, b = keeper(store, "a"), keeper(store, "b")
    everything = plan("s1", "s2", "s3", "s4")
    for k in (a, b):
        k.restrict(everything)
    rounds(a, b)
    held_a, held_b = set(a.held()), set(b.held())
    assert held_a | held_b == {"s1", "s2", "s3", "s4"} and not held_a & held_b
    assert (len(held_a), len(held_b)) == (2, 2)
    assert set(a.restrict(everything).sources) == held_a


def test_a_dead_workers_units_are_taken_over_and_shown_as_moving(store: Store) -> None:
    a, b = keeper(store, "a"), keeper(store, "b")
    for k in (a, b):
        k.restrict(plan("s1", "s2"))
    rounds(a, b)
    (dead_unit,) = a.held()
    with store.session() as s:
        s.add(UnitStatus(unit=f"source:{dead_unit}", status="Active", message="", worker="a"))
    time.sleep(0.7)  # a stops heartbeating: its lease expires
    b._round()
    assert set(b.held()) == {"s1", "s2"}
    with store.session() as s:
        row = s.get(UnitStatus, f"source:{dead_unit}")
        assert row is not None and row.status == "Starting" and row.worker == ""
    # a wakes up: its renewal fails, the unit is lost, and its checkpoints are fenced
    fenced = a.checkpoints(dead_unit)
    a._round()
    assert a.take_lost() == {dead_unit} and a.held() == {}
    with pytest.raises(Fenced):
        fenced.save(f"pipeline:p-{dead_unit}", {"lsn": 1})


def test_drain_releases_only_after_the_runner_stopped(store: Store) -> None:
    a, b = keeper(store, "a"), keeper(store, "b")
    for k in (a, b):
        k.restrict(plan("s1"))
    a._round()
    assert set(a.held()) == {"s1"}
    a.settled({"s1"})
    a.drain()
    a._round()
    assert set(a.held()) == {"s1"}  # still running: not released yet
    assert a.restrict(plan("s1")).sources == {}  # the supervisor stops it gracefully
    a.settled(set())
    a._round()
    assert a.held() == {}
    b._round()
    assert set(b.held()) == {"s1"}
    a._round()
    assert a.drained.is_set()
    with store.session() as s:
        row = s.get(WorkerRow, "a")
        assert row is not None and row.state == "stopped"


def test_a_worker_that_comes_back_gets_its_share(store: Store) -> None:
    # Nothing expires here: a TTL that a loaded machine's slow rounds cannot outlast.
    steady = ClusterConfig(lease_ttl=10, heartbeat_interval=0.1)
    a = keeper(store, "a", steady)
    a.restrict(plan("s1", "s2"))
    rounds(a)
    assert set(a.held()) == {"s1", "s2"}
    b = keeper(store, "b", steady)
    b.restrict(plan("s1", "s2"))
    b._round()  # b is live now
    a.settled(set(a.held()))
    a._round()  # a decides to hand one over; it still runs: nothing released yet
    assert len(a.held()) == 2
    a.settled(set(a.restrict(plan("s1", "s2")).sources))
    a._round()
    b._round()
    assert len(a.held()) == 1 and len(b.held()) == 1


def test_the_status_board_writes_only_held_units(store: Store) -> None:
    a = keeper(store, "a")
    a.restrict(plan("s1", "s2"))
    a.leases.acquire(SOURCE, "s2")  # held by an earlier process of "a": reclaimed in a round
    with store.session() as s:
        s.add(UnitStatus(unit="source:s9", status="Active", message="", worker="z"))
    a.board.report("source:s9", "Broken", "not mine")
    with store.session() as s:
        row = s.get(UnitStatus, "source:s9")
        assert row is not None and row.status == "Active"
    a._round()
    a.board.report("source:s1", "Active")
    with store.session() as s:
        assert s.get(UnitStatus, "source:s1") is not None
