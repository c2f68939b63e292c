"""Which units a worker claims or hands over in one assignment round (pure logic).

Every worker decides for itself from the same :class:`~.leases.Overview`: it claims free or
expired units until it holds ``ceil(units / live workers)``, and hands one unit over per round
while it holds more than that and another live worker holds less. Claims race through the
lease row (only one worker wins a unit); a unit released or expired for ``orphan_after`` is
claimed by anyone, whatever the balance, so availability never waits on workers agreeing on
who is live.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from tideflow.engine.cluster.leases import Overview


@dataclass(frozen=True)
class Decision:
    claim: list[str] = field(default_factory=list)
    shed: list[str] = field(default_factory=list)


def target(units: int, workers: int) -> int:
    return math.ceil(units / max(workers, 1))


def decide(
    me: str,
    kind: str,
    candidates: Iterable[str],
    held: set[str],
    view: Overview,
    *,
    orphan_after: timedelta,
    draining: bool = False,
) -> Decision:
    units = sorted(set(candidates))
    gone = sorted(held - set(units))  # deleted units: nothing runs them, give the lease back
    if draining:
        return Decision(shed=sorted(held))
    live = set(view.live_workers) | {me}
    goal = target(len(units), len(live))
    claimable, orphans = [], []
    for unit in units:
        if unit in held:
            continue
        lease = view.leases.get((kind, unit))
        if lease is None:
            claimable.append(unit)
        elif lease.owner == me:  # held under our id by an earlier process: take it back
            claimable.append(unit)
            orphans.append(unit)
        elif lease.owner == "" or lease.expires_at <= view.now:
            claimable.append(unit)
            if lease.expires_at <= view.now - orphan_after:
                orphans.append(unit)
    kept = len(held) - len(gone)
    # Spread the race: each worker prefers a different order of the same units.
    claimable.sort(key=lambda u: hashlib.sha1(f"{me}/{u}".encode()).digest())
    claim = claimable[: max(0, goal - kept)]
    claim += [u for u in orphans if u not in claim]
    shed = list(gone)
    if kept > goal and _someone_below(me, kind, view, live, goal):
        mine = sorted(u for u in held if u not in gone)
        shed.append(max(mine, key=lambda u: hashlib.sha1(f"{me}/{u}".encode()).digest()))
    return Decision(claim=claim, shed=shed)


def _someone_below(me: str, kind: str, view: Overview, live: set[str], goal: int) -> bool:
    counts = Counter(
        lease.owner
        for (k, _), lease in view.leases.items()
        if k == kind and lease.owner in live and lease.expires_at > view.now
    )
    return any(counts.get(w, 0) < goal for w in live if w != me)
