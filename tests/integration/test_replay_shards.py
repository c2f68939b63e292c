"""Replay of a sharded log-mode pipeline against the real broker: every shard's checkpoint is
rewound to its own partitions' offsets of the same point in time, an unsharded pipeline keeps
one checkpoint with every partition (``engine/cluster/replay.py``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic
from sqlalchemy import select

from tests.support import kafka, stores
from tideflow.engine.checkpoints import decode
from tideflow.engine.cluster import replay
from tideflow.engine.cluster.logmode import topic_prefix
from tideflow.errors import TerminalError
from tideflow.ids import new_id, new_stream_id
from tideflow.store.db import Store
from tideflow.store.models.resources import Destination, Pipeline, Source
from tideflow.store.models.runtime import Checkpoint

PARTITIONS = 5


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with stores.migrated("sqlite", tmp_path) as s:
        yield s


@pytest.fixture
def source_id() -> Iterator[str]:
    """A source whose one topic holds 3 messages per partition, sent before and after a cut."""
    sid = new_id()
    topic = f"{topic_prefix(sid)}public.items"
    client = kafka.admin()  # kept referenced: a collected client cancels its futures
    client.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": kafka.BOOTSTRAP})
    try:
        for p in range(PARTITIONS):
            producer.produce(topic, b"before", partition=p)
        producer.flush(30)
        time.sleep(1.1)  # timestamps are in ms: the cut lies strictly between the two sends
        yield sid
    finally:
        kafka.delete_topics_with_prefix(topic_prefix(sid))


def _pipeline(store: Store, source_id: str, body: dict[str, object], state: str) -> str:
    pid = new_id()
    with store.session() as s:
        s.add(
            Source(
                id=source_id,
                stream_id=new_stream_id(),
                name=f"src-{source_id}",
                connector="postgresql",
                config={},
            )
        )
        dest = Destination(id=new_id(), name=f"dst-{pid}", connector="postgresql", config={})
        s.add(dest)
        s.flush()
        s.add(
            Pipeline(
                id=pid,
                name=f"pipe-{pid}",
                source_id=source_id,
                destination_id=dest.id,
                source_body={},
                destination_body=body,
                desired_state=state,
            )
        )
    return pid


def _checkpoints(store: Store, pid: str) -> dict[str, dict[str, int]]:
    with store.session() as s:
        rows = s.scalars(select(Checkpoint).where(Checkpoint.unit.like(f"pipeline:{pid}/%")))
        return {
            r.unit: decode({"version": r.version, "position": r.position})["offsets"] for r in rows
        }


def _send_after_cut(source_id: str) -> datetime:
    cut = datetime.now(UTC)
    time.sleep(0.05)
    producer = Producer({"bootstrap.servers": kafka.BOOTSTRAP})
    topic = f"{topic_prefix(source_id)}public.items"
    for p in range(PARTITIONS):
        producer.produce(topic, b"after", partition=p)
        producer.produce(topic, b"after", partition=p)
    producer.flush(30)
    return cut


def test_each_shard_is_rewound_to_its_own_partitions(store: Store, source_id: str) -> None:
    pid = _pipeline(store, source_id, {"cluster.shards": 2}, "Paused")
    cut = _send_after_cut(source_id)
    position = replay.rewind(store, kafka.BOOTSTRAP, pid, cut)
    topic = f"{topic_prefix(source_id)}public.items"
    assert position["offsets"] == {f"{topic}:{p}": 1 for p in range(PARTITIONS)}
    assert _checkpoints(store, pid) == {
        f"pipeline:{pid}/log#0/2": {f"{topic}:{p}": 1 for p in (0, 2, 4)},
        f"pipeline:{pid}/log#1/2": {f"{topic}:{p}": 1 for p in (1, 3)},
    }
    replay.rewind(store, kafka.BOOTSTRAP, pid)  # from the start of the log
    assert _checkpoints(store, pid) == {
        f"pipeline:{pid}/log#0/2": {f"{topic}:{p}": 0 for p in (0, 2, 4)},
        f"pipeline:{pid}/log#1/2": {f"{topic}:{p}": 0 for p in (1, 3)},
    }


def test_an_unsharded_pipeline_keeps_one_checkpoint(store: Store, source_id: str) -> None:
    pid = _pipeline(store, source_id, {}, "Stopped")
    cut = _send_after_cut(source_id)
    replay.rewind(store, kafka.BOOTSTRAP, pid, cut)
    topic = f"{topic_prefix(source_id)}public.items"
    assert _checkpoints(store, pid) == {
        f"pipeline:{pid}/log": {f"{topic}:{p}": 1 for p in range(PARTITIONS)}
    }


def test_an_active_pipeline_is_refused(store: Store, source_id: str) -> None:
    pid = _pipeline(store, source_id, {"cluster.shards": 2}, "Active")
    with pytest.raises(TerminalError, match="pause or stop it"):
        replay.rewind(store, kafka.BOOTSTRAP, pid)
    assert _checkpoints(store, pid) == {}
