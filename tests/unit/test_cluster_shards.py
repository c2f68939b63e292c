"""Sharded pipelines (engine/cluster/shards.py): the partition-to-shard mapping, the setting's
validation, and how log mode lays a sharded pipeline out as units."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.unit.test_cluster_logmode import pipeline, plan
from tideflow.connectors.destinations.kafka.config import KafkaDestinationConfig
from tideflow.connectors.sources.kafka.config import KafkaSourceConfig
from tideflow.engine import plan as plans
from tideflow.engine.cluster import logmode, shards
from tideflow.engine.cluster.leases import PIPELINE
from tideflow.engine.plan import Connector
from tideflow.errors import Invalid
from tideflow.store.models.resources import Pipeline


@pytest.mark.parametrize(("count", "partitions"), [(1, 1), (2, 6), (3, 6), (3, 8), (4, 3)])
def test_every_partition_belongs_to_exactly_one_shard(count: int, partitions: int) -> None:
    owners = {p: [k for k in range(count) if shards.owns(p, k, count)] for p in range(partitions)}
    assert all(len(ks) == 1 for ks in owners.values()), owners
    # Shard k reads k, k+N, k+2N, ...: spread evenly.
    for k in range(count):
        assert [p for p, ks in owners.items() if ks == [k]] == list(range(k, partitions, count))


def test_the_kafkadirect_source_reads_the_partitions_of_its_shard() -> None:
    base = {"topic.prefix": "t.", "partition.assignment": "manual"}
    cfgs = [
        KafkaSourceConfig.model_validate(
            base | {"partition.shard.count": 3, "partition.shard.index": k}
        )
        for k in range(3)
    ]
    assert [[p for p in range(7) if c.owns(p)] for c in cfgs] == [[0, 3, 6], [1, 4], [2, 5]]
    whole = KafkaSourceConfig.model_validate(base)
    assert all(whole.owns(p) for p in range(7))  # default: unsharded, reads everything


@pytest.mark.parametrize(
    "raw",
    [
        {"partition.shard.count": 2, "partition.shard.index": 2},
        {"partition.shard.count": 0},
        {"partition.shard.count": 2, "partition.assignment": "group"},
    ],
    ids=["index-out-of-range", "zero-shards", "group-assignment"],
)
def test_bad_shard_settings_of_the_kafkadirect_source_are_refused(raw: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"partition\.shard"):
        KafkaSourceConfig.model_validate(
            {"topic.prefix": "t.", "partition.assignment": "manual"} | raw
        )


@pytest.mark.parametrize(
    ("code", "body", "count"),
    [
        ("postgresql", {}, 1),
        ("postgresql", {"cluster.shards": 3}, 3),
        ("mysql", {"cluster.shards": "4"}, 4),
        ("files", {"cluster.shards": 2}, 2),
        ("kafka", {"cluster.shards": 1}, 1),
        ("kafka", {"some.unknown.key": "kept"}, 1),
    ],
)
def test_shard_counts_that_are_accepted(code: str, body: dict[str, object], count: int) -> None:
    assert shards.parse(code, body) == (count, None)
    assert shards.check(code, body) == count


@pytest.mark.parametrize(
    ("code", "value", "words"),
    [
        ("kafka", 2, "needs a single writer"),
        ("postgresql", 0, "from 1 to 32"),
        ("postgresql", 33, "from 1 to 32"),
        ("postgresql", "many", "from 1 to 32"),
        ("postgresql", True, "from 1 to 32"),
        ("postgresql", 2.5, "from 1 to 32"),
    ],
)
def test_shard_counts_that_are_refused_with_a_422(code: str, value: object, words: str) -> None:
    count, error = shards.parse(code, {shards.KEY: value})
    assert count == 1 and error is not None and words in error
    with pytest.raises(Invalid) as raised:
        shards.check(code, {shards.KEY: value})
    assert raised.value.status == 422 and raised.value.code == shards.CODE


def test_a_sharded_pipeline_is_one_fenced_unit_per_shard_sharing_the_group() -> None:
    p = plan()
    p.pipelines["s1"][0] = replace(pipeline("p1", "s1"), shards=3)
    out = logmode.layout(p, "127.0.0.1:9092", partitions=1)
    readers = [f"log:p1#{k}" for k in range(3)]
    assert sorted(out.sources) == sorted([*readers, "log:p2", "log:p2/s2", "s1", "s2"])
    for k, rid in enumerate(readers):
        assert logmode.key_of(rid) == (PIPELINE, f"p1#{k}")
        assert shards.pipeline_of(f"p1#{k}") == "p1"
        (piped,) = out.pipelines[rid]
        assert piped.id == "p1" and piped.source_id == rid
        assert piped.checkpoint_unit == f"pipeline:p1/log#{k}/3"
        config = out.sources[rid].config
        assert isinstance(config, KafkaSourceConfig)
        assert (config.shard_index, config.shard_count) == (k, 3)
        assert config.group_id == "tideflow-pipeline-p1" and config.assignment == "manual"
    # New topics of the source get one partition per shard at least.
    (log1,) = out.pipelines["s1"]
    dest = log1.destination.config
    assert isinstance(dest, KafkaDestinationConfig) and dest.partitions == 3
    # The unsharded pipelines keep their unit and checkpoint names.
    (unsharded,) = out.pipelines["log:p2"]
    assert unsharded.checkpoint_unit == "pipeline:p2/log"
    config = out.sources["log:p2"].config
    assert isinstance(config, KafkaSourceConfig) and config.shard_count == 1


def test_the_extra_sources_of_a_fan_in_pipeline_are_not_sharded() -> None:
    p = plan()
    p.pipelines["s2"][0] = replace(p.pipelines["s2"][0], shards=3)
    out = logmode.layout(p, "127.0.0.1:9092")
    assert "log:p2/s2" in out.sources and not any("#" in rid for rid in out.sources)


@pytest.mark.parametrize(
    ("code", "value", "shards_", "broken"),
    [("postgresql", 3, 3, False), ("kafka", 3, 1, True), ("postgresql", "x", 1, True)],
)
def test_the_planner_reads_the_setting_and_marks_a_bad_one_broken(
    code: str, value: object, shards_: int, broken: bool
) -> None:
    source = Connector("s1", "s1", "postgresql", "Active", None, None, "fs")
    dest = Connector("d1", "d1", code, "Active", None, None, "fd")
    row = Pipeline(
        id="p1",
        name="p1",
        source_id="s1",
        destination_id="d1",
        desired_state="Active",
        source_body={},
        destination_body={"id": "d1", shards.KEY: value},
    )
    out = plans._pipeline(row, source, dest, primary=True)
    assert out.shards == shards_
    assert (out.error is not None) == broken
    if broken:
        assert out.error is not None and shards.KEY in out.error
