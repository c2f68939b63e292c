"""Transactional Kafka destination: a replay after a crash never shows a change twice."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from tests.support import kafka
from tideflow.connectors.destinations.kafka.config import KafkaDestinationConfig
from tideflow.connectors.destinations.kafka.destination import KafkaDestination
from tideflow.events import Batch, ChangeEvent, Column, Op, TableSchema

pytestmark = pytest.mark.integration
PREFIX = "tfk-resume-"
TABLE = TableSchema(
    "public",
    "items",
    (Column("id", "int8", "int", False, True), Column("v", "text", "text")),
    ("id",),
)


@pytest.fixture(scope="module", autouse=True)
def _topics() -> Iterator[None]:
    yield
    kafka.delete_topics_with_prefix(PREFIX)


def change(i: int, op: Op = Op.CREATE) -> ChangeEvent:
    """Change i of transaction i // 10 at WAL location 1000 + i."""
    row = {"id": i % 7, "v": f"v{i}"}
    before, after = (row, None) if op is Op.DELETE else (None, row)
    return ChangeEvent(op, TABLE, before, after, {"lsn": 1000 + i}, 1, txid=i // 10)


def batch(lo: int, hi: int, position: int | None) -> Batch:
    events = [change(i, Op.DELETE if i % 9 == 0 else Op.CREATE) for i in range(lo, hi)]
    return Batch(events=events, position=None if position is None else {"lsn": position})


def writer(
    name: str, prefix: str, resume: dict[str, Any] | None, schemas: bool = False
) -> KafkaDestination:
    cfg = KafkaDestinationConfig.model_validate(
        kafka.dest_config(
            **{"topic.prefix": prefix, "transactional": True, "json.schema.enable": schemas}
        )
    )
    dest = KafkaDestination(cfg, name=name)
    dest.resume_from(resume)
    dest.open()
    return dest


def changes(topic: str, count: int) -> list[int]:
    """The WAL locations of the committed envelopes (tombstones left out)."""
    messages = kafka.read_topic(topic, count=count, settle=2.0)
    docs = [orjson.loads(v) for _, v in messages if v is not None]
    return [d.get("payload", d)["source"]["lsn"] - 1000 for d in docs]


@pytest.mark.parametrize(
    ("checkpoint", "schemas"),
    [(None, False), (10, False), (20, False), (10, True)],
    ids=[
        "no-checkpoint",
        "checkpoint-before-the-last-batches",
        "checkpoint-at-the-last-commit",
        "with-connect-schemas",
    ],
)
def test_replay_after_a_crash_writes_each_change_once(
    checkpoint: int | None, schemas: bool
) -> None:
    prefix = kafka.unique(PREFIX) + "."
    name = kafka.unique("resume")
    first = writer(name, prefix, None, schemas)
    first.write(batch(0, 10, 10))  # transaction 0, committed at 10
    first.write(batch(10, 20, 20))  # transaction 1, committed at 20
    first.write(batch(20, 25, 20))  # half of transaction 2: the position stays at 20
    first.close()  # the crash: checkpoints after `checkpoint` were never stored

    resume = None if checkpoint is None else {"lsn": checkpoint}
    second = writer(name, prefix, resume, schemas)
    start = 0 if checkpoint is None else checkpoint
    # The replay is the same stream cut into different batches.
    second.write(batch(start, 22, 20))
    second.write(batch(22, 30, 30))
    second.write(batch(30, 35, 30))
    second.close()

    tombstones = len([i for i in range(35) if i % 9 == 0])
    assert changes(f"{prefix}public.items", 35 + tombstones) == list(range(35))
