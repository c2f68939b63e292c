"""Runtime logic with a scripted in-memory source and a memory destination.

These fakes exist only to test the runtime's own rules (acknowledgement, back-pressure,
retries, poison records, pause/resume); connectors are tested against real services in
tests/integration. Every ``ack`` checks invariant 1 at the moment it happens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tideflow.connectors.base import Destination, Source
from tideflow.connectors.config import ConnectorConfig, setting
from tideflow.connectors.registry import ConnectorSpec, register
from tideflow.engine.batching import Limits
from tideflow.engine.checkpoints import Checkpoints
from tideflow.engine.config import RuntimeConfig
from tideflow.engine.errors import DeadLetter, PoisonRecord
from tideflow.engine.worker import Worker
from tideflow.errors import TerminalError, TransientError
from tideflow.events import Batch, ChangeEvent, Column, Commit, Op, Record, TableSchema
from tideflow.ids import new_id, new_stream_id
from tideflow.store.crypto import SecretBox
from tideflow.store.db import Store
from tideflow.store.models.resources import Destination as DestinationRow
from tideflow.store.models.resources import Pipeline as PipelineRow
from tideflow.store.models.resources import Source as SourceRow
from tideflow.store.models.runtime import UnitStatus

MODULE = __name__
TABLE = TableSchema(
    "public",
    "items",
    (Column("id", "int4", "int", False, True), Column("v", "int4", "int")),
    ("id",),
)


class ScriptConfig(ConnectorConfig):
    script: str = setting(key="script", display_name="Script", description="Upstream name.")


class SinkConfig(ConnectorConfig):
    sink: str = setting(key="sink", display_name="Sink", description="Sink name.")


@dataclass
class Upstream:
    """A fake upstream log: records in commit order, and the acks received."""

    records: list[Record] = field(default_factory=list)
    acks: list[int] = field(default_factory=list)
    opens: list[dict[str, Any] | None] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    produced: int = 0
    huge: int = 0  # a lazily generated transaction of this many events, then its commit
    cond: threading.Condition = field(default_factory=threading.Condition)
    checker: Any = None

    def transaction(self, ids: Sequence[int], v: int = 0) -> int:
        with self.cond:
            base = (len(self.records) + 1) * 10
            for n, i in enumerate(ids):
                self.records.append(
                    ChangeEvent(
                        Op.UPDATE, TABLE, None, {"id": i, "v": v}, {"lsn": base + n}, 1000, base
                    )
                )
            commit = base + len(ids) + 5
            self.records.append(Commit({"lsn": commit}, 1000))
            self.cond.notify_all()
            return commit

    def heartbeat(self) -> int:
        with self.cond:
            lsn = (len(self.records) + 1) * 10
            self.records.append(Commit({"lsn": lsn}, 1000, heartbeat=True))
            self.cond.notify_all()
            return lsn

    def last_commit(self) -> int:
        return max(r.position["lsn"] for r in self.records if isinstance(r, Commit))


UPSTREAMS: dict[str, Upstream] = {}


class ScriptedSource(Source[ScriptConfig]):
    connector = "scripted"

    def open(self, position: dict[str, Any] | None) -> None:
        self.up = UPSTREAMS[self.config.script]
        self.up.opens.append(position)
        start = position["lsn"] if position else -1
        self.cursor = 0
        # Resume after the commit at ``start``: whole transactions only.
        for i, r in enumerate(self.up.records):
            if isinstance(r, Commit) and r.position["lsn"] <= start:
                self.cursor = i + 1
        self.huge_left = self.up.huge

    def poll(self, timeout: float, max_records: int) -> Sequence[Record]:
        up = self.up
        if self.huge_left:
            n = min(max_records, self.huge_left)
            out: list[Record] = [
                ChangeEvent(
                    Op.CREATE,
                    TABLE,
                    None,
                    {"id": up.huge - self.huge_left + k, "v": 0},
                    {"lsn": 1},
                    1000,
                )
                for k in range(n)
            ]
            self.huge_left -= n
            if not self.huge_left:
                out.append(Commit({"lsn": 99}, 1000))
            up.produced += n
            return out
        with up.cond:
            if self.cursor >= len(up.records):
                up.cond.wait(timeout)
            out = up.records[self.cursor : self.cursor + max_records]
            self.cursor += len(out)
            return out

    def ack(self, position: dict[str, Any]) -> None:
        lsn = position["lsn"]
        if self.up.acks and lsn < self.up.acks[-1]:
            self.up.violations.append(f"ack moved back to {lsn}")
        if self.up.checker is not None:
            self.up.checker(lsn)
        self.up.acks.append(lsn)

    def close(self) -> None:
        pass


@dataclass
class Sink:
    rows: dict[int, int] = field(default_factory=dict)
    lsns: set[int] = field(default_factory=set)
    writes: list[int] = field(default_factory=list)  # events per write call
    gate: threading.Event = field(default_factory=threading.Event)
    transient_failures: int = 0
    terminal: str | None = None
    poison_ids: set[int] = field(default_factory=set)
    dead: list[DeadLetter] = field(default_factory=list)
    consumed: int = 0
    opens: int = 0

    def __post_init__(self) -> None:
        self.gate.set()


SINKS: dict[str, Sink] = {}


class MemoryDestination(Destination[SinkConfig]):
    connector = "memory"

    def open(self) -> None:
        self.sink = SINKS[self.config.sink]
        self.sink.opens += 1

    def write(self, batch: Batch) -> None:
        sink = self.sink
        while not sink.gate.wait(0.05):
            pass
        if sink.terminal:
            raise TerminalError(sink.terminal)
        if sink.transient_failures:
            sink.transient_failures -= 1
            raise TransientError("destination is restarting")
        bad = [e for e in batch.events if e.after and e.after["id"] in sink.poison_ids]
        if bad:
            raise PoisonRecord([DeadLetter(e, "value out of range") for e in bad])
        for e in batch.events:
            assert e.after is not None
            sink.rows[e.after["id"]] = e.after["v"]
            sink.lsns.add(e.position["lsn"])
        sink.writes.append(len(batch.events))
        sink.consumed += len(batch.events)

    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        self.sink.dead.extend(letters)

    def close(self) -> None:
        pass


register(ConnectorSpec("scripted", "source", "Scripted", ScriptConfig, f"{MODULE}:ScriptedSource"))
register(
    ConnectorSpec("memory", "destination", "Memory", SinkConfig, f"{MODULE}:MemoryDestination")
)

FAST = RuntimeConfig(
    limits=Limits(max_events=50, max_wait=0.02),
    queue_depth=2,
    max_poll_records=20,
    poll_timeout=0.05,
    coalesce_events=100,
    reconcile_interval=0.05,
    drain_timeout=5,
    retry_initial=0.05,
    retry_max=0.2,
)


def wait_until(predicate: Any, timeout: float = 15.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what or predicate}")


@dataclass
class Env:
    store: Store
    worker: Worker
    source_id: str
    upstream: Upstream
    sinks: list[str] = field(default_factory=list)

    def pipeline(self, sink_name: str, *, policy: str = "halt", state: str = "Active") -> str:
        SINKS[sink_name] = Sink()
        self.sinks.append(sink_name)
        did, pid = new_id(), new_id()
        with self.store.session() as s:
            s.add(
                DestinationRow(
                    id=did, name=f"dest-{sink_name}", connector="memory", config={"sink": sink_name}
                )
            )
            s.flush()
            s.add(
                PipelineRow(
                    id=pid,
                    name=f"pipe-{sink_name}",
                    source_id=self.source_id,
                    destination_id=did,
                    source_body={},
                    destination_body={"poison.policy": policy},
                    desired_state=state,
                )
            )
        return pid

    def set_state(self, pipeline_id: str, state: str) -> None:
        with self.store.session() as s:
            row = s.get(PipelineRow, pipeline_id)
            assert row is not None
            row.desired_state = state

    def status(self, unit: str) -> tuple[str, str] | None:
        with self.store.session() as s:
            row = s.get(UnitStatus, unit)
            return (row.status, row.message) if row else None

    def checkpoint(self, pipeline_id: str) -> int | None:
        pos = Checkpoints(self.store).load(f"pipeline:{pipeline_id}")
        return None if pos is None else int(pos["lsn"])

    def pipeline_ids(self) -> list[str]:
        with self.store.session() as s:
            return [p.id for p in s.query(PipelineRow).filter_by(source_id=self.source_id)]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    store = Store(f"sqlite:///{tmp_path}/meta.db")
    store.migrate()
    name = f"up-{new_id()}"
    up = UPSTREAMS[name] = Upstream()
    sid = new_id()
    with store.session() as s:
        s.add(
            SourceRow(
                id=sid,
                stream_id=new_stream_id(),
                name=name,
                connector="scripted",
                config={"script": name},
            )
        )
    worker = Worker(store, SecretBox("test"), worker_id="test", config=FAST)
    e = Env(store, worker, sid, up)

    def check_invariant_1(lsn: int) -> None:
        # At the moment of an ack, every pipeline of the source has checkpointed at least
        # this position and its sink holds every event committed up to it.
        for pid in e.pipeline_ids():
            cp = e.checkpoint(pid)
            if cp is None or cp < lsn:
                up.violations.append(f"ack {lsn} before pipeline {pid} checkpointed it ({cp})")
        expected = {r.position["lsn"] for r in _events_up_to(up, lsn)}
        for name in e.sinks:
            sink = SINKS[name]
            missing = expected - sink.lsns - {d.event.position["lsn"] for d in sink.dead}
            if missing:
                up.violations.append(f"ack {lsn} before sink {name} had {sorted(missing)[:5]}")

    up.checker = check_invariant_1
    try:
        yield e
    finally:
        worker.stop()
        store.dispose()


def _events_up_to(up: Upstream, lsn: int) -> list[ChangeEvent]:
    out: list[ChangeEvent] = []
    pending: list[ChangeEvent] = []
    for r in up.records:
        if isinstance(r, ChangeEvent):
            pending.append(r)
        elif isinstance(r, Commit):
            if r.position["lsn"] > lsn:
                break
            out.extend(pending)
            pending = []
    return out


def test_ack_only_after_the_checkpoint_is_durable(env: Env) -> None:
    pid = env.pipeline("a")
    for k in range(30):
        env.upstream.transaction([k % 7, k % 5], v=k)
    sink = SINKS["a"]
    sink.gate.clear()
    env.worker.start()
    wait_until(lambda: env.status(f"pipeline:{pid}") == ("Active", ""), what="pipeline active")
    time.sleep(0.3)  # writes are blocked: nothing may be acknowledged beyond the start
    assert env.checkpoint(pid) is None
    assert all(a <= 0 for a in env.upstream.acks)
    sink.gate.set()
    last = env.upstream.last_commit()
    wait_until(lambda: env.upstream.acks and env.upstream.acks[-1] == last, what="final ack")
    assert env.checkpoint(pid) == last
    assert env.upstream.violations == []
    expected: dict[int, int] = {}
    for k in range(30):
        expected[k % 7] = expected[k % 5] = k  # the last change of each key wins
    assert sink.rows == expected


def test_ack_is_the_minimum_across_two_pipelines(env: Env) -> None:
    fast, slow = env.pipeline("fast"), env.pipeline("slow")
    SINKS["slow"].gate.clear()
    first = env.upstream.transaction([1, 2])
    env.worker.start()
    wait_until(lambda: env.checkpoint(fast) == first, what="fast pipeline checkpoint")
    for k in range(10):
        env.upstream.transaction([k], v=k)
    last = env.upstream.last_commit()
    wait_until(lambda: env.checkpoint(fast) == last, what="fast pipeline catches up")
    time.sleep(0.2)
    assert env.checkpoint(slow) is None
    assert not [a for a in env.upstream.acks if a > 0], "acked past the slow pipeline"
    SINKS["slow"].gate.set()
    wait_until(lambda: env.upstream.acks and env.upstream.acks[-1] == last, what="final ack")
    assert env.checkpoint(slow) == last
    assert env.upstream.violations == []


def test_memory_is_bounded_with_a_huge_transaction(env: Env) -> None:
    env.upstream.huge = 20_000
    pid = env.pipeline("big")
    sink = SINKS["big"]
    max_inflight = 0
    env.worker.start()
    deadline = time.monotonic() + 60
    while sink.consumed < 20_000 and time.monotonic() < deadline:
        sink.gate.clear()  # a slow destination: let the source run into back-pressure
        time.sleep(0.01)
        max_inflight = max(max_inflight, env.upstream.produced - sink.consumed)
        sink.gate.set()
        time.sleep(0.002)
    assert sink.consumed == 20_000
    wait_until(lambda: env.checkpoint(pid) == 99, what="commit checkpointed")
    cfg = FAST
    bound = (
        (cfg.queue_depth + 3) * cfg.limits.max_events + cfg.max_poll_records + cfg.coalesce_events
    )
    assert max_inflight <= bound, (max_inflight, bound)
    assert max(sink.writes) <= cfg.coalesce_events + cfg.limits.max_events


def test_heartbeats_advance_checkpoints_and_acks_without_events(env: Env) -> None:
    pid = env.pipeline("idle")
    env.worker.start()
    wait_until(lambda: env.status(f"source:{env.source_id}") == ("Active", ""))
    for _ in range(3):
        lsn = env.upstream.heartbeat()
        wait_until(lambda lsn=lsn: env.checkpoint(pid) == lsn, what=f"checkpoint {lsn}")
        wait_until(lambda lsn=lsn: env.upstream.acks and env.upstream.acks[-1] == lsn)
    assert SINKS["idle"].writes == []  # empty batches never reach the destination
    assert env.upstream.violations == []


def test_transient_destination_errors_retry_the_same_batch(env: Env) -> None:
    pid = env.pipeline("flaky")
    SINKS["flaky"].transient_failures = 3
    last = env.upstream.transaction([1, 2, 3], v=5)
    env.worker.start()
    wait_until(lambda: env.checkpoint(pid) == last, what="delivered after retries")
    assert SINKS["flaky"].rows == {1: 5, 2: 5, 3: 5}
    assert SINKS["flaky"].opens >= 4  # re-opened before every retry
    wait_until(lambda: env.status(f"pipeline:{pid}") == ("Active", ""), what="message cleared")
    assert env.worker.metrics.snapshot()[f"pipeline:{pid}"]["retries"] == 3


def test_terminal_errors_break_the_pipeline_with_the_message(env: Env) -> None:
    pid = env.pipeline("broken")
    SINKS["broken"].terminal = "permission denied for schema dst"
    env.upstream.transaction([1])
    env.worker.start()
    st = wait_until(lambda: (s := env.status(f"pipeline:{pid}")) and s[0] == "Broken" and s)
    assert "permission denied for schema dst" in st[1]
    assert env.checkpoint(pid) is None
    assert not [a for a in env.upstream.acks if a > 0]
    SINKS["broken"].terminal = None  # fixed outside: the supervisor restarts it with backoff
    last = env.upstream.last_commit()
    wait_until(lambda: env.checkpoint(pid) == last, what="recovered after restart")


def test_poison_record_halts_by_default(env: Env) -> None:
    pid = env.pipeline("halt")
    SINKS["halt"].poison_ids = {13}
    env.upstream.transaction([12, 13, 14])
    env.worker.start()
    st = wait_until(lambda: (s := env.status(f"pipeline:{pid}")) and s[0] == "Broken" and s)
    assert "public.items" in st[1] and "id=13" in st[1] and "value out of range" in st[1]
    assert SINKS["halt"].rows == {}
    assert env.checkpoint(pid) is None


def test_poison_record_goes_to_dead_letters_and_the_rest_is_written(env: Env) -> None:
    pid = env.pipeline("dlq", policy="dead_letter")
    SINKS["dlq"].poison_ids = {13}
    last = env.upstream.transaction([12, 13, 14], v=1)
    env.worker.start()
    wait_until(lambda: env.checkpoint(pid) == last, what="batch delivered")
    assert SINKS["dlq"].rows == {12: 1, 14: 1}
    assert [d.event.after for d in SINKS["dlq"].dead] == [{"id": 13, "v": 1}]
    assert env.worker.metrics.snapshot()[f"pipeline:{pid}"]["dead_letters"] == 1


def test_pause_and_resume_lose_nothing_and_hold_the_ack(env: Env) -> None:
    a, b = env.pipeline("pa"), env.pipeline("pb")
    first = env.upstream.transaction([1], v=1)
    env.worker.start()
    wait_until(lambda: env.checkpoint(a) == first and env.checkpoint(b) == first)
    env.set_state(b, "Paused")
    wait_until(lambda: env.status(f"pipeline:{b}") == ("Paused", ""), what="b paused")
    for k in range(5):
        env.upstream.transaction([k + 10], v=k)
    last = env.upstream.last_commit()
    wait_until(lambda: env.checkpoint(a) == last, what="a keeps going")
    time.sleep(0.2)
    assert env.checkpoint(b) == first
    assert max(env.upstream.acks) <= first, "acked past the paused pipeline's checkpoint"
    env.set_state(b, "Active")
    wait_until(lambda: env.checkpoint(b) == last, what="b catches up after resume")
    assert SINKS["pb"].rows == SINKS["pa"].rows
    wait_until(lambda: env.upstream.acks[-1] == last, what="ack advances again")
    assert env.upstream.violations == []


def test_stop_is_graceful_and_reports_statuses(env: Env) -> None:
    pid = env.pipeline("stop")
    env.worker.start()
    for k in range(20):
        env.upstream.transaction([k], v=k)
    last = env.upstream.last_commit()
    wait_until(lambda: env.checkpoint(pid) == last)
    env.worker.stop()
    assert env.status(f"pipeline:{pid}")[0] == "Stopped"  # type: ignore[index]
    assert env.status(f"source:{env.source_id}")[0] == "Stopped"  # type: ignore[index]
    assert env.upstream.acks[-1] == last


def test_source_opens_from_the_oldest_checkpoint(env: Env) -> None:
    a, b = env.pipeline("oa"), env.pipeline("ob")
    c1 = env.upstream.transaction([1])
    c2 = env.upstream.transaction([2])
    cps = Checkpoints(env.store)
    cps.save(f"pipeline:{a}", {"lsn": c2})
    cps.save(f"pipeline:{b}", {"lsn": c1})
    env.worker.start()
    wait_until(lambda: env.upstream.opens, what="source opened")
    assert env.upstream.opens[0] == {"lsn": c1}
    wait_until(lambda: env.checkpoint(b) == c2)
    assert SINKS["ob"].rows == {2: 0}


def test_broken_config_is_reported_not_raised(env: Env) -> None:
    pid = env.pipeline("cfg")
    with env.store.session() as s:
        row = s.get(DestinationRow, s.get(PipelineRow, pid).destination_id)  # type: ignore[union-attr]
        assert row is not None
        row.config = {}
    env.worker.start()
    st = wait_until(lambda: (s := env.status(f"pipeline:{pid}")) and s[0] == "Broken" and s)
    assert "sink" in st[1]


def test_a_config_change_restarts_the_pipeline_on_the_new_config(env: Env) -> None:
    pid = env.pipeline("old")
    first = env.upstream.transaction([1], v=1)
    env.worker.start()
    wait_until(lambda: env.checkpoint(pid) == first)
    SINKS["new"] = Sink()
    env.sinks.append("new")
    with env.store.session() as s:
        pipe = s.get(PipelineRow, pid)
        assert pipe is not None
        dest = s.get(DestinationRow, pipe.destination_id)
        assert dest is not None
        dest.config = {"sink": "new"}
    wait_until(lambda: SINKS["new"].opens >= 1, what="re-opened on the new config")
    second = env.upstream.transaction([2], v=2)
    wait_until(lambda: env.checkpoint(pid) == second)
    assert SINKS["new"].rows == {2: 2} and SINKS["old"].rows == {1: 1}


def test_pipelines_carry_only_their_topics(env: Env) -> None:
    pid = env.pipeline("topics")
    with env.store.session() as s:
        pipe = s.get(PipelineRow, pid)
        assert pipe is not None
        pipe.source_body = {"topics": [f"source_{env.source_id}.public.other"]}
    other = TableSchema("public", "other", TABLE.columns, ("id",))
    with env.upstream.cond:
        env.upstream.records += [
            ChangeEvent(Op.CREATE, TABLE, None, {"id": 1, "v": 1}, {"lsn": 1}, 1),
            ChangeEvent(Op.CREATE, other, None, {"id": 2, "v": 2}, {"lsn": 2}, 1),
            Commit({"lsn": 3}, 1),
        ]
    env.worker.start()
    wait_until(lambda: env.checkpoint(pid) == 3)
    assert SINKS["topics"].rows == {2: 2}


def test_stop_does_not_hang_when_a_destination_is_stuck(env: Env) -> None:
    pid = env.pipeline("stuck")
    env.upstream.transaction([1])
    SINKS["stuck"].gate.clear()
    env.worker.start()
    wait_until(lambda: env.status(f"pipeline:{pid}") == ("Active", ""))
    t0 = time.monotonic()
    env.worker.stop()
    assert time.monotonic() - t0 < FAST.drain_timeout + 5
    assert env.checkpoint(pid) is None  # nothing was written: nothing is checkpointed


def test_a_pipeline_fed_by_two_sources_keeps_one_checkpoint_per_source(env: Env) -> None:
    pid = env.pipeline("fanin")
    second = UPSTREAMS["fanin-up"] = Upstream()
    sid2 = new_id()
    with env.store.session() as s:
        s.add(
            SourceRow(
                id=sid2,
                stream_id=new_stream_id(),
                name="fanin-up",
                connector="scripted",
                config={"script": "fanin-up"},
                pipeline_id=pid,
            )
        )
    c1 = env.upstream.transaction([1], v=1)
    c2 = second.transaction([2, 3], v=2)
    env.worker.start()
    wait_until(lambda: env.checkpoint(pid) == c1, what="primary source checkpoint")
    cps = Checkpoints(env.store)
    wait_until(
        lambda: (cps.load(f"pipeline:{pid}/{sid2}") or {}).get("lsn") == c2,
        what="second source checkpoint",
    )
    assert SINKS["fanin"].rows == {1: 1, 2: 2, 3: 2}
    wait_until(lambda: env.status(f"pipeline:{pid}") == ("Active", ""))
