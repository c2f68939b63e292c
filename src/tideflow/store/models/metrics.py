"""Time series the worker's metrics sampler writes (see ``docs/metrics.md``)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from tideflow.store.models.base import Base


class MetricPoint(Base):
    """One value of one metric of one unit at a fixed resolution.

    ``unit`` is ``source:<id>``, ``pipeline:<id>``, ``destination:<id>`` or
    ``table:<source id>:<schema.table>``; ``resolution`` is the step in seconds (10 or 60);
    ``ts`` the step's end in epoch seconds. Counters are stored as running totals (reset when a
    worker restarts: readers add up increases), gauges as sampled values.
    """

    __tablename__ = "metric_points"
    __table_args__ = (Index("ix_metric_points_resolution_ts", "resolution", "ts"),)

    unit: Mapped[str] = mapped_column(String(300), primary_key=True)
    metric: Mapped[str] = mapped_column(String(64), primary_key=True)
    resolution: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    value: Mapped[float] = mapped_column(Float)
