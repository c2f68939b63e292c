"""Who claims and who hands over in an assignment round (engine/cluster/assignment.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tideflow.engine.cluster.assignment import decide, target
from tideflow.engine.cluster.leases import LeaseView, Overview

NOW = datetime(2026, 1, 1, tzinfo=UTC)
ORPHAN = timedelta(seconds=4)


def lease(unit: str, owner: str, *, expires_in: float = 5.0, generation: int = 1) -> LeaseView:
    at = NOW + timedelta(seconds=expires_in)
    return LeaseView("source", unit, owner, generation, at, NOW)


def view(live: set[str], *leases: LeaseView) -> Overview:
    return Overview(NOW, frozenset(live), {("source", x.unit_id): x for x in leases})


def test_target_is_the_ceiling_of_units_per_worker() -> None:
    assert [target(n, 3) for n in (0, 1, 3, 4, 7)] == [0, 1, 1, 2, 3]
    assert target(5, 0) == 5


def test_a_lone_worker_claims_every_free_unit() -> None:
    d = decide("w1", "source", ["a", "b", "c"], set(), view({"w1"}), orphan_after=ORPHAN)
    assert sorted(d.claim) == ["a", "b", "c"] and d.shed == []


def test_claims_stop_at_the_fair_share_of_live_workers() -> None:
    d = decide("w1", "source", ["a", "b", "c", "d"], set(), view({"w1", "w2"}), orphan_after=ORPHAN)
    assert len(d.claim) == 2
    held = view({"w1", "w2"}, lease("a", "w2"), lease("b", "w2"), lease("c", "", expires_in=-1))
    d = decide("w1", "source", ["a", "b", "c", "d"], set(), held, orphan_after=ORPHAN)
    assert sorted(d.claim) == ["c", "d"]


def test_an_expired_lease_is_claimed_within_the_share_and_by_anyone_once_orphaned() -> None:
    units = ["a", "b", "c"]
    live = {"w1", "w2"}
    just_expired = view(live, lease("a", "w1"), lease("b", "w1"), lease("c", "dead", expires_in=-1))
    # w1 is at its share (2 of 3 over 2 workers): the fresh expiry is for w2
    assert decide("w1", "source", units, {"a", "b"}, just_expired, orphan_after=ORPHAN).claim == []
    assert decide("w2", "source", units, set(), just_expired, orphan_after=ORPHAN).claim == ["c"]
    long_expired = view(
        live, lease("a", "w1"), lease("b", "w1"), lease("c", "dead", expires_in=-10)
    )
    assert decide("w1", "source", units, {"a", "b"}, long_expired, orphan_after=ORPHAN).claim == [
        "c"
    ]


def test_a_live_lease_of_another_worker_is_never_claimed() -> None:
    d = decide(
        "w1", "source", ["a"], set(), view({"w1", "w2"}, lease("a", "w2")), orphan_after=ORPHAN
    )
    assert d.claim == []


def test_a_returning_worker_gets_units_handed_over_one_per_round() -> None:
    live = {"w1", "w2", "w3"}
    v = view(live, lease("a", "w1"), lease("b", "w1"), lease("c", "w2"))
    d = decide("w1", "source", ["a", "b", "c"], {"a", "b"}, v, orphan_after=ORPHAN)
    assert len(d.shed) == 1 and d.shed[0] in {"a", "b"}
    # nobody is below the share: nothing moves
    v = view({"w1", "w2"}, lease("a", "w1"), lease("b", "w1"), lease("c", "w2"))
    assert decide("w1", "source", ["a", "b", "c"], {"a", "b"}, v, orphan_after=ORPHAN).shed == []


def test_draining_hands_everything_over_and_claims_nothing() -> None:
    v = view({"w1"}, lease("a", "w1"))
    d = decide("w1", "source", ["a", "b"], {"a"}, v, orphan_after=ORPHAN, draining=True)
    assert d == type(d)(claim=[], shed=["a"])


def test_units_that_no_longer_exist_are_released() -> None:
    v = view({"w1"}, lease("a", "w1"), lease("gone", "w1"))
    d = decide("w1", "source", ["a"], {"a", "gone"}, v, orphan_after=ORPHAN)
    assert d.shed == ["gone"] and d.claim == []


def test_own_leases_from_an_earlier_process_are_reclaimed_at_once() -> None:
    v = view({"w1"}, lease("a", "w1", generation=4))
    assert decide("w1", "source", ["a"], set(), v, orphan_after=ORPHAN).claim == ["a"]
