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


class SnapshotTable(Base):
    """One table of a snapshot request and its durable progress (see ``docs/snapshots.md``).

    ``last_key`` (the key's text values, JSON list) and the counters only move after the rows
    they cover are durable at every destination and checkpointed: a resumed snapshot reads
    from ``last_key`` on and never skips a row (duplicates possible, gaps never: invariant 2).
    """

    __tablename__ = "snapshot_tables"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(40), index=True)
    source_id: Mapped[str] = mapped_column(String(24), index=True)
    table: Mapped[str] = mapped_column(String(255))  # schema.table
    topic_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # incremental | blocking
    # pending | running | completed | failed | cancelled
    status: Mapped[str] = mapped_column(String(16), index=True)
    filter: Mapped[str | None] = mapped_column(Text, default=None)
    surrogate_key: Mapped[str | None] = mapped_column(String(255), default=None)
    last_key: Mapped[list[str] | None] = mapped_column(JsonType, default=None)
    chunks_done: Mapped[int] = mapped_column(BigInteger, default=0)
    rows_read: Mapped[int] = mapped_column(BigInteger, default=0)
    rows_total: Mapped[int] = mapped_column(BigInteger, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    submitted_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
