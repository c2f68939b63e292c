"""Log mode: Kafka as the durable log between a source and its pipelines (``docs/cluster.md``).

The plan is rewritten into units made of existing connectors, so the runtime runs them as it
runs any source and pipeline:

- **source-log unit** (runner id ``<source id>``, lease ``source``): the source feeds one
  pipeline whose destination is the ``kafka`` destination writing per-table topics
  ``tideflow.<source id>.<schema>.<table>`` (Debezium envelopes with Connect schemas, key = the
  primary key). The source acknowledges upstream only once that pipeline's checkpoint
  (``log:<source id>``) is stored, which happens only after the broker acknowledged every
  message (invariant 1).
- **pipeline unit** (runner id ``log:<pipeline id>``, lease ``pipeline``): a ``kafkadirect``
  source reading those topics in the consumer group ``tideflow-pipeline-<pipeline id>``,
  feeding the pipeline as configured; it checkpoints ``pipeline:<id>/log`` after its
  destination flush and only then commits the group offsets. A pipeline with
  ``cluster.shards`` N > 1 is N such units ``log:<pipeline id>#<k>``, each reading its own
  partitions with its own checkpoint ``pipeline:<id>/log#<k>/<N>`` (:mod:`.shards`).

So every pipeline has its own progress: a slow or stopped destination holds back nothing but
itself, and a pipeline can be replayed from any offset the topics still hold.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from functools import lru_cache

from tideflow.connectors.config import ConnectorConfig, validate
from tideflow.connectors.destinations.kafka.config import KafkaDestinationConfig
from tideflow.connectors.sources.kafka.config import KafkaSourceConfig
from tideflow.engine.cluster import shards
from tideflow.engine.cluster.leases import PIPELINE, SOURCE
from tideflow.engine.plan import ACTIVE, PAUSED, Connector, PipelinePlan, Plan

TOPIC_PREFIX = "tideflow."
READER = "log:"  # runner ids of pipeline units; never a prefix of a real id


def topic_prefix(source_id: str) -> str:
    """Topics of a source are ``tideflow.<source id>.<schema>.<table>``."""
    return f"{TOPIC_PREFIX}{source_id}."


def lease_unit(plan: PipelinePlan, source_id: str) -> str:
    """The lease unit of a pipeline in log mode: its id, or ``<id>/<source id>`` for the extra
    sources of a fan-in pipeline (one consumer group per source it reads)."""
    return plan.id if plan.checkpoint_unit == f"pipeline:{plan.id}" else f"{plan.id}/{source_id}"


def group_id(unit: str) -> str:
    return "tideflow-pipeline-" + unit.replace("/", "-")


def key_of(runner_id: str) -> tuple[str, str]:
    """(lease kind, lease unit id) of a runner id."""
    if runner_id.startswith(READER):
        return PIPELINE, runner_id.removeprefix(READER)
    return SOURCE, runner_id


def runner_of(kind: str, unit_id: str) -> str:
    return READER + unit_id if kind == PIPELINE else unit_id


def hidden(status_unit: str) -> bool:
    """Status units of the plumbing (the log pipeline, the reader's source side): never shown."""
    return status_unit.startswith(("source:" + READER, "pipeline:" + READER))


def layout(plan: Plan, bootstrap: str, partitions: int = 1) -> Plan:
    """``plan`` in log mode: one source-log unit per source, one unit per pipeline."""
    out = Plan()
    for sid, source in plan.sources.items():
        pipes = plan.pipelines.get(sid, [])
        out.sources[sid] = source
        out.source_info[sid] = plan.source_info[sid]
        if not pipes:
            continue
        out.pipelines[sid] = [_log_pipeline(source, pipes, bootstrap, partitions)]
        for p in pipes:
            unit = lease_unit(p, sid)
            count = p.shards if unit == p.id else 1
            for index, rid, checkpoint in _readers(p, unit, count):
                out.sources[rid] = _reader(rid, source, unit, bootstrap, index, count)
                # The reader's events keep the original source's identity (envelope source
                # block).
                out.source_info[rid] = plan.source_info[sid]
                out.pipelines[rid] = [replace(p, source_id=rid, checkpoint_unit=checkpoint)]
    return out


def _readers(p: PipelinePlan, unit: str, count: int) -> list[tuple[int, str, str]]:
    """(shard index, runner id, checkpoint unit) of each unit reading for ``p``: one, or one
    per shard (cluster/shards). Only a pipeline's primary source is sharded (the extra
    sources of a fan-in pipeline keep one unit each)."""
    checkpoint = p.checkpoint_unit + "/log"
    if count <= 1:
        return [(0, runner_of(PIPELINE, unit), checkpoint)]
    return [
        (
            k,
            runner_of(PIPELINE, shards.unit(unit, k)),
            shards.checkpoint_unit(checkpoint, k, count),
        )
        for k in range(count)
    ]


def _log_pipeline(
    source: Connector, pipes: list[PipelinePlan], bootstrap: str, partitions: int
) -> PipelinePlan:
    # New topics get at least one partition per shard of the source's most sharded pipeline;
    # existing topics keep theirs (the Kafka destination never changes a topic's partition
    # count: that would move keys to other partitions and break order per key, invariant 3).
    dest = _destination(source.id, bootstrap, max([partitions, *(p.shards for p in pipes)]))
    # The log is written while any pipeline wants it, even one whose destination is paused:
    # it finds its changes in the log when it resumes, and the slot does not pin WAL meanwhile.
    wanted = any(p.desired == ACTIVE for p in pipes)
    return PipelinePlan(
        id=READER + source.id,
        name=f"log of {source.name}",
        source_id=source.id,
        destination=dest,
        desired=ACTIVE,
        effective=source.desired if wanted else PAUSED,
        checkpoint_unit=f"log:{source.id}",
        topics=None,
        policy="halt",
        error=dest.error,
        fingerprint=dest.fingerprint,
    )


@lru_cache(maxsize=4096)
def _destination(source_id: str, bootstrap: str, partitions: int) -> Connector:
    raw = {
        "kafka.sink.bootstrap": bootstrap,
        "json.schema.enable": True,  # exact column types back in the reader
        "topic.prefix": topic_prefix(source_id),
        "topic.partitions": partitions,
        "tombstones.on.delete": False,  # the reader skips them; compaction is not used
    }
    config, error = _validated(KafkaDestinationConfig, raw)
    name = f"log-{source_id}"
    return Connector(READER + source_id, name, "kafka", ACTIVE, config, error, _hash(raw))


def _reader(
    rid: str, source: Connector, unit: str, bootstrap: str, index: int, count: int
) -> Connector:
    base = _reader_config(source.id, unit, bootstrap, index, count)
    return replace(base, id=rid, name=source.name)


@lru_cache(maxsize=4096)
def _reader_config(
    source_id: str, unit: str, bootstrap: str, index: int = 0, count: int = 1
) -> Connector:
    raw: dict[str, object] = {
        "kafka.bootstrap.servers": bootstrap,
        "topic.prefix": topic_prefix(source_id),
        "format": "json",
        "schemas.enable": True,
        "group.id": group_id(unit),
        # The lease makes this the group's only reader: joining the group would only add a
        # wait for a dead owner's session to expire after every takeover.
        "partition.assignment": "manual",
    }
    if count > 1:
        # Shards share the group (one set of committed offsets per pipeline) but never a
        # partition: each commits only the partitions it reads.
        raw |= {"partition.shard.count": count, "partition.shard.index": index}
    config, error = _validated(KafkaSourceConfig, raw)
    return Connector("", "", "kafkadirect", ACTIVE, config, error, _hash(raw))


def _validated(
    model: type[ConnectorConfig], raw: dict[str, object]
) -> tuple[ConnectorConfig | None, str | None]:
    try:
        return validate(model, raw), None
    except Exception as exc:  # a bad bootstrap setting: shown on the unit, never raised
        return None, f"log mode: {exc}"


def _hash(raw: dict[str, object]) -> str:
    return hashlib.sha256(repr(sorted(raw.items())).encode()).hexdigest()
