"""Two workers' samplers writing the same metric point (engine/observe.py).

In cluster log mode the pipelines of one source run on several workers and each credits the
source's unit, so two samplers can write the same (unit, metric, resolution, second). The
second writer must neither fail nor lose the rest of its sample. Run on SQLite and Postgres.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.support import stores
from tideflow.engine.metrics import Metrics
from tideflow.engine.observe import FINE, Sampler
from tideflow.store.crypto import SecretBox
from tideflow.store.db import Store
from tideflow.store.models.metrics import MetricPoint


@pytest.fixture(params=stores.BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with stores.migrated(request.param, tmp_path, "tfmetrics") as s:
        yield s


def test_two_samplers_writing_the_same_point_keep_the_first_and_the_rest_of_the_sample(
    store: Store,
) -> None:
    first = Sampler(store, SecretBox("k"), Metrics())
    second = Sampler(store, SecretBox("k"), Metrics())
    first._write({"source:s1": {"records_lag": 5.0}}, 1000, {}, 999)
    # Same second, same unit and metric, plus a point only the second worker has.
    second._write(
        {"source:s1": {"records_lag": 7.0}, "pipeline:p2": {"records_lag": 3.0}}, 1000, {}, 999
    )
    with store.session() as s:
        rows = s.execute(
            select(MetricPoint.unit, MetricPoint.value).where(
                MetricPoint.resolution == FINE, MetricPoint.ts == 1000
            )
        ).all()
    assert sorted(rows) == [("pipeline:p2", 3.0), ("source:s1", 5.0)]
