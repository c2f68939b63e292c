"""Log mode's plan layout and lease keys (engine/cluster/logmode.py), and the keeper's
write-side fence."""

from __future__ import annotations

import time
from pathlib import Path

from tideflow.connectors.destinations.kafka.config import KafkaDestinationConfig
from tideflow.connectors.sources.kafka.config import KafkaSourceConfig
from tideflow.engine.cluster import logmode
from tideflow.engine.cluster.keeper import GuardedStatusBoard, Keeper
from tideflow.engine.cluster.leases import PIPELINE, SOURCE, ClusterConfig, Leases
from tideflow.engine.plan import Connector, PipelinePlan, Plan
from tideflow.envelope import SourceInfo
from tideflow.store.db import Store
from tideflow.store.models.runtime import UnitStatus


def pipeline(pid: str, sid: str, desired: str = "Active", primary: bool = True) -> PipelinePlan:
    dest = Connector(f"d-{pid}", f"d-{pid}", "postgresql", "Active", None, None, f"fp-{pid}")
    return PipelinePlan(
        id=pid,
        name=pid,
        source_id=sid,
        destination=dest,
        desired=desired,
        effective=desired,
        checkpoint_unit=f"pipeline:{pid}" if primary else f"pipeline:{pid}/{sid}",
        topics=frozenset({"public.items"}),
        policy="halt",
        error=None,
        fingerprint=f"fp-{pid}",
    )


def plan() -> Plan:
    p = Plan()
    for sid in ("s1", "s2"):
        p.sources[sid] = Connector(sid, f"name-{sid}", "postgresql", "Active", None, None, sid)
        p.source_info[sid] = SourceInfo("postgresql", f"name-{sid}", "db")
    p.pipelines["s1"] = [pipeline("p1", "s1"), pipeline("p2", "s1", desired="Paused")]
    p.pipelines["s2"] = [pipeline("p2", "s2", desired="Paused", primary=False)]
    return p


def test_each_source_writes_its_log_and_each_pipeline_reads_it_on_its_own() -> None:
    out = logmode.layout(plan(), "127.0.0.1:9092")
    assert sorted(out.sources) == ["log:p1", "log:p2", "log:p2/s2", "s1", "s2"]
    (log1,) = out.pipelines["s1"]
    assert log1.checkpoint_unit == "log:s1" and log1.effective == "Active"
    assert log1.destination.code == "kafka"
    dest = log1.destination.config
    assert isinstance(dest, KafkaDestinationConfig)
    assert dest.topic_prefix == "tideflow.s1." and dest.json_schema_enable
    (log2,) = out.pipelines["s2"]
    assert log2.effective == "Paused"  # no pipeline of s2 wants data
    reader = out.sources["log:p1"]
    assert reader.code == "kafkadirect" and reader.name == "name-s1"
    config = reader.config
    assert isinstance(config, KafkaSourceConfig)
    assert config.topic_prefix == "tideflow.s1." and config.group_id == "tideflow-pipeline-p1"
    assert config.assignment == "manual"  # the lease is the membership
    assert out.source_info["log:p1"] == SourceInfo("postgresql", "name-s1", "db")
    (p1,) = out.pipelines["log:p1"]
    assert (p1.id, p1.source_id, p1.checkpoint_unit) == ("p1", "log:p1", "pipeline:p1/log")
    assert p1.topics == frozenset({"public.items"})
    # The extra source of a fan-in pipeline has its own consumer group and checkpoint.
    (fan_in,) = out.pipelines["log:p2/s2"]
    assert fan_in.checkpoint_unit == "pipeline:p2/s2/log"
    fan_in_config = out.sources["log:p2/s2"].config
    assert isinstance(fan_in_config, KafkaSourceConfig)
    assert fan_in_config.topic_prefix == "tideflow.s2."
    assert fan_in_config.group_id == "tideflow-pipeline-p2-s2"


def test_runner_ids_map_to_lease_keys_and_back() -> None:
    assert logmode.key_of("s1") == (SOURCE, "s1")
    assert logmode.key_of("log:p1") == (PIPELINE, "p1")
    assert logmode.key_of("log:p2/s2") == (PIPELINE, "p2/s2")
    for rid in ("s1", "log:p1", "log:p2/s2"):
        assert logmode.runner_of(*logmode.key_of(rid)) == rid
    assert logmode.hidden("pipeline:log:s1") and logmode.hidden("source:log:p1")
    assert not logmode.hidden("pipeline:p1") and not logmode.hidden("source:s1")


def test_keepers_share_sources_and_pipelines_and_report_only_real_units(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/meta.db")
    store.migrate()
    config = ClusterConfig(lease_ttl=0.6, heartbeat_interval=0.1, log_mode=True)
    keepers = []
    for w in ("a", "b"):
        leases = Leases(store, w, config)
        leases.register(1)
        keepers.append(Keeper(store, leases, config, GuardedStatusBoard(store, w)))
    for _ in range(3):
        for k in keepers:
            k.restrict(plan())
            k._round()
    held = [set(k.held()) for k in keepers]
    assert held[0] | held[1] == {"s1", "s2", "log:p1", "log:p2", "log:p2/s2"}
    assert not held[0] & held[1]
    a = keepers[0]
    mine = a.restrict(plan())
    assert set(mine.sources) == held[0]
    for rid in mine.sources:
        a.board.report(f"source:{rid}", "Active")
        for p in mine.pipelines.get(rid, []):
            a.board.report(f"pipeline:{p.id}", "Active", part=rid)
    with store.session() as s:
        units = {u.unit for u in s.query(UnitStatus)}
    assert units and not any(logmode.hidden(u) for u in units)


def test_no_write_once_the_lease_may_have_expired_by_the_local_clock(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path}/meta.db")
    store.migrate()
    config = ClusterConfig(lease_ttl=0.6, heartbeat_interval=0.1, log_mode=False)
    leases = Leases(store, "a", config)
    leases.register(1)
    k = Keeper(store, leases, config, GuardedStatusBoard(store, "a"))
    p = plan()
    k.restrict(p)
    k._round()
    fence = k.checkpoints("s1").fence
    assert fence is not None and fence.may_write()  # type: ignore[attr-defined]
    time.sleep(0.55)  # past ttl - heartbeat without a renewal (a frozen process)
    assert not fence.may_write()  # type: ignore[attr-defined]
    k._round()
    assert fence.may_write()  # type: ignore[attr-defined]
