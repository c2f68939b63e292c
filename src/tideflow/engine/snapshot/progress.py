"""Snapshot progress in the metadata store (table ``snapshot_tables``).

The coordinator writes here only after the rows a change covers are durable at every
destination and checkpointed (it learns that from the source runner's acknowledgement,
invariant 1), so ``last_key`` never runs ahead of the data: after a crash the snapshot resumes
after ``last_key`` and re-reads at most the chunks that were not yet durable (duplicates,
never gaps: invariant 2). The API writes requests and cancellations; a row the API cancelled
is never moved back to running here (updates are guarded by status).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import case, func, select, update

from tideflow.store.db import Store
from tideflow.store.models.runtime import SnapshotTable

PENDING, RUNNING, COMPLETED, FAILED, CANCELLED = (
    "pending",
    "running",
    "completed",
    "failed",
    "cancelled",
)
ACTIVE = (PENDING, RUNNING)
INCREMENTAL, BLOCKING = "incremental", "blocking"


@dataclass(frozen=True, slots=True)
class Task:
    """A copy of one ``snapshot_tables`` row, detached from any session."""

    id: str
    table: str
    kind: str
    filter: str | None
    surrogate_key: str | None
    last_key: tuple[str, ...] | None
    chunks_done: int
    rows_read: int


class Progress:
    """Reads and writes snapshot rows of one source; one short session per call."""

    def __init__(self, store: Store, source_id: str) -> None:
        self.store = store
        self.source_id = source_id

    def active(self) -> list[Task]:
        with self.store.session() as s:
            rows = s.scalars(
                select(SnapshotTable)
                .where(SnapshotTable.source_id == self.source_id)
                .where(SnapshotTable.status.in_(ACTIVE))
                .order_by(SnapshotTable.submitted_at, SnapshotTable.id)
            ).all()
            return [
                Task(
                    r.id,
                    r.table,
                    r.kind,
                    r.filter,
                    r.surrogate_key,
                    tuple(r.last_key) if r.last_key is not None else None,
                    r.chunks_done,
                    r.rows_read,
                )
                for r in rows
            ]

    def start(self, task_id: str, rows_total: int) -> None:
        # One guarded UPDATE, not read-then-write: a cancellation committed between the read
        # and the write would be overwritten with ``running`` and the snapshot would go on.
        with self.store.session() as s:
            s.execute(
                update(SnapshotTable)
                .where(SnapshotTable.id == task_id, SnapshotTable.status.in_(ACTIVE))
                .values(
                    status=RUNNING,
                    rows_total=case(
                        (SnapshotTable.rows_read > rows_total, SnapshotTable.rows_read),
                        else_=rows_total,
                    ),
                    started_at=func.coalesce(SnapshotTable.started_at, datetime.now(UTC)),
                )
            )

    def advance(
        self, task_id: str, last_key: tuple[str, ...] | None, chunks_done: int, rows_read: int
    ) -> None:
        with self.store.session() as s:
            s.execute(
                update(SnapshotTable)
                .where(SnapshotTable.id == task_id, SnapshotTable.status == RUNNING)
                .values(
                    last_key=list(last_key) if last_key is not None else None,
                    chunks_done=chunks_done,
                    rows_read=rows_read,
                )
            )

    def finish(self, task_id: str, status: str, message: str = "") -> None:
        with self.store.session() as s:
            s.execute(
                update(SnapshotTable)
                .where(SnapshotTable.id == task_id, SnapshotTable.status.in_(ACTIVE))
                .values(status=status, message=message, finished_at=datetime.now(UTC))
            )
