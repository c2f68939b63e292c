"""State the data plane writes: unit status and checkpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tideflow.store.models.base import Base, JsonType, utcnow


class UnitStatus(Base):
    """What the runtime observes for a unit (``source:<id>`` or ``pipeline:<id>``)."""

    __tablename__ = "unit_status"

    unit: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Active | Paused | Stopped | Broken | Starting | Unassigned | Unknown
    status: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text, default="")
    worker: Mapped[str] = mapped_column(String(64), default="")
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Checkpoint(Base):
    """The durable position of a pipeline (invariant 1 and 7: versioned, forward-only).

    ``generation`` fences writers: a worker may only write with the generation of the lease it
    holds (cluster mode).
    """

    __tablename__ = "checkpoints"

    unit: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    position: Mapped[dict[str, Any]] = mapped_column(JsonType)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
