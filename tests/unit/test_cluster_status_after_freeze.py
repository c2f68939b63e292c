"""A worker frozen past its lease keeps units nobody took: their statuses are written again.

While a worker is frozen, another worker shows its expired units as moving (``Starting``,
no worker) and claims them only after two more heartbeats. A worker that wakes up before that
renews its leases and keeps running the units; its status board had already written
``Active``, so without writing again the API would show ``Starting`` for good (the failover
e2e test saw a pipeline stay Starting for 90 s). Rounds are driven by hand on SQLite.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tideflow.engine.cluster.keeper import GuardedStatusBoard, Keeper
from tideflow.engine.cluster.leases import ClusterConfig, Leases
from tideflow.engine.plan import Connector, Plan
from tideflow.envelope import SourceInfo
from tideflow.store.db import Store
from tideflow.store.models.runtime import UnitStatus

CONFIG = ClusterConfig(lease_ttl=0.6, heartbeat_interval=0.1)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(f"sqlite:///{tmp_path}/meta.db")
    s.migrate()
    return s


def shown(store: Store, unit: str) -> tuple[str, str]:
    with store.session() as s:
        row = s.get(UnitStatus, unit)
        assert row is not None
        return row.status, row.worker


def test_a_worker_waking_before_its_unit_is_taken_shows_it_active_again(store: Store) -> None:
    leases = Leases(store, "a", CONFIG)
    leases.register(1)
    a = Keeper(store, leases, CONFIG, GuardedStatusBoard(store, "a"))
    everything = Plan()
    everything.sources["s1"] = Connector("s1", "s1", "postgresql", "Active", None, None, "s1")
    everything.source_info["s1"] = SourceInfo("postgresql", "s1", None)
    a.restrict(everything)
    a._round()
    assert set(a.held()) == {"s1"}
    a.board.report("source:s1", "Active")
    assert shown(store, "source:s1") == ("Active", "a")

    time.sleep(0.8)  # a is frozen past its lease
    # Another worker, already holding its share, sees the expired lease of a worker that
    # stopped heartbeating: it shows the unit as moving (keeper._mark_orphans) but does not
    # claim it before two more heartbeats.
    other = Leases(store, "b", CONFIG)
    other.register(2)
    other.mark_orphaned("a", ["source:s1"])
    assert shown(store, "source:s1") == ("Starting", "")

    a._round()  # a wakes up: the renewal succeeds, the unit is still a's
    assert set(a.held()) == {"s1"} and a.take_lost() == set()
    a.board.flush()  # what the supervisor does every reconcile
    assert shown(store, "source:s1") == ("Active", "a")


def test_a_unit_lost_while_frozen_may_not_write_though_the_other_leases_were_renewed(
    store: Store,
) -> None:
    leases = Leases(store, "a", CONFIG)
    leases.register(1)
    a = Keeper(store, leases, CONFIG, GuardedStatusBoard(store, "a"))
    everything = Plan()
    for sid in ("s1", "s2"):
        everything.sources[sid] = Connector(sid, sid, "postgresql", "Active", None, None, sid)
        everything.source_info[sid] = SourceInfo("postgresql", sid, None)
    a.restrict(everything)
    a._round()
    assert set(a.held()) == {"s1", "s2"}
    fence_lost = a.checkpoints("s1").fence
    fence_kept = a.checkpoints("s2").fence
    assert fence_lost is not None and fence_kept is not None
    assert fence_lost.may_write() and fence_kept.may_write()

    time.sleep(0.8)  # a is frozen past its leases: its clock says "do not write"
    assert not fence_lost.may_write() and not fence_kept.may_write()
    other = Leases(store, "b", CONFIG)
    other.register(2)
    assert other.acquire("source", "s1") is not None  # b takes s1 over, not s2

    a._round()  # a wakes up: s1 is lost, s2 renewed
    assert set(a.held()) == {"s2"}
    # Until the supervisor aborts s1's runner, its fence must keep it from writing.
    assert not fence_lost.may_write()
    assert fence_kept.may_write()
