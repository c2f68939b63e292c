"""Cluster mode: worker heartbeats, unit leases and their history (``docs/cluster.md``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tideflow.store.models.base import Base, JsonType, utcnow


class WorkerRow(Base):
    """A ``tideflow worker`` process; ``last_seen`` is its heartbeat (metadata-store clock).

    ``state``: ``active`` (takes units), ``draining`` (asked to hand its units over; takes
    none), ``stopped`` (exited after handing everything over).
    """

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255), default="")
    pid: Mapped[int] = mapped_column(Integer, default=0)
    state: Mapped[str] = mapped_column(String(16), default="active")
    units: Mapped[list[str]] = mapped_column(JsonType, default=list)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)


class Lease(Base):
    """The right to run one unit (``kind`` ``source``: a source reader and its pipelines).

    ``generation`` grows by one on every change of owner; checkpoints of the unit are written
    only by the owner, with this generation, in a transaction that re-reads this row (fencing).
    ``owner`` is empty when the unit was released and nobody has taken it yet.
    """

    __tablename__ = "leases"

    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    unit_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), default="", index=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=0)
    expires_at: Mapped[datetime] = mapped_column(default=utcnow)
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)
    renewed_at: Mapped[datetime] = mapped_column(default=utcnow)


class LeaseEvent(Base):
    """Every change of a lease's owner, for operators and for the failover tests.

    ``event``: ``acquired`` (a free or new unit), ``takeover`` (the previous owner's lease had
    expired), ``released`` (handed over gracefully), ``lost`` (the owner found it taken).
    ``previous_renewed_at`` is the previous owner's last renewal: ``at`` minus it bounds how
    long the unit went without an owner.
    """

    __tablename__ = "lease_events"
    __table_args__ = (Index("ix_lease_events_unit", "kind", "unit_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    unit_id: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(16))
    owner: Mapped[str] = mapped_column(String(64))
    generation: Mapped[int] = mapped_column(BigInteger)
    previous_owner: Mapped[str] = mapped_column(String(64), default="")
    previous_renewed_at: Mapped[datetime | None] = mapped_column(default=None)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    detail: Mapped[str] = mapped_column(Text, default="")
