"""Which sources read binary snapshot chunks (ADR 0005): only those whose every pipeline loads
them as they are — no transforms, a destination declaring ``takes_binary_chunks``."""

from __future__ import annotations

import dataclasses

import pytest

from tideflow.engine.plan import Connector, PipelinePlan
from tideflow.engine.source_runner import binary_chunks


def pipeline(code: str, transforms: bool = False) -> PipelinePlan:
    dest = Connector("d", "d", code, "Active", None, None, "fp")
    plan = PipelinePlan(
        id="p",
        name="p",
        source_id="s",
        destination=dest,
        desired="Active",
        effective="Active",
        checkpoint_unit="pipeline:p",
        topics=None,
        policy="halt",
        error=None,
        fingerprint="fp",
    )
    if transforms:
        plan = dataclasses.replace(plan, transforms=(object(),))  # type: ignore[arg-type]
    return plan


@pytest.mark.parametrize(
    ("plans", "expected"),
    [
        ([pipeline("postgresql")], True),
        ([pipeline("postgresql"), pipeline("postgresql")], True),
        ([pipeline("postgresql"), pipeline("kafka")], False),  # Kafka renders COPY text
        ([pipeline("files")], False),
        ([pipeline("mysql")], False),
        ([pipeline("postgresql", transforms=True)], False),  # transforms work on rows
        ([pipeline("no-such-connector")], False),
        ([], False),
    ],
    ids=["pg", "two-pg", "pg-and-kafka", "files", "mysql", "transforms", "unknown", "none"],
)
def test_binary_chunks_only_when_every_pipeline_loads_them(
    plans: list[PipelinePlan], expected: bool
) -> None:
    assert binary_chunks(plans) is expected
