"""Durable pipeline positions in the metadata store (table ``checkpoints``).

Format (invariant 7): the row's ``version`` column plus ``position`` form the versioned
document ``{"version": 1, "position": {...}}``; :func:`decode` upgrades older versions by code
and refuses unknown newer ones. Writes are forward-only (invariant 2) and fenced by a
generation number: a writer whose generation is older than the stored one is refused, so a
worker that lost its lease cannot move a checkpoint back (cluster mode). In cluster mode a
:class:`Fence` also checks, inside the same transaction, that the writer still holds the lease
of the unit and supplies its generation, so a worker that lost its lease cannot move a
checkpoint at all, even before the new owner has written one.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tideflow.engine import positions
from tideflow.engine.errors import Fenced
from tideflow.engine.positions import Position
from tideflow.errors import TerminalError
from tideflow.store.db import Store
from tideflow.store.models.runtime import Checkpoint

VERSION = 1


class Saved(enum.Enum):
    WRITTEN = "written"
    UNCHANGED = "unchanged"  # same position as stored
    REFUSED_OLDER = "refused_older"  # invariant 2: never move back


def encode(position: Position) -> dict[str, Any]:
    return {"version": VERSION, "position": dict(position)}


def decode(document: dict[str, Any]) -> Position:
    """The position of a stored checkpoint document, upgraded to the current version."""
    version = document.get("version")
    if version == VERSION:
        position = document.get("position")
        if not isinstance(position, dict):
            raise TerminalError(f"checkpoint document has no position: {document!r}")
        return dict(position)
    raise TerminalError(
        f"checkpoint format version {version!r} is not supported by this Tideflow "
        f"(supported: {VERSION}); upgrade Tideflow",
        code="checkpoint_version",
    )


def unit(pipeline_id: str) -> str:
    return f"pipeline:{pipeline_id}"


class Fence(Protocol):
    """Decides, inside a checkpoint write's transaction, whether the writer may write."""

    def generation(self, session: Session, unit_name: str) -> int:
        """The generation to write ``unit_name`` with; raises :class:`Fenced` when the writer
        no longer holds the unit. Runs in ``session``'s transaction, before the write, and may
        lock rows so that a takeover cannot commit between this check and the write."""
        ...


class Checkpoints:
    """Reads and writes checkpoints; safe to use from several threads (one session per call)."""

    def __init__(self, store: Store, *, generation: int = 0, fence: Fence | None = None) -> None:
        self.store = store
        self.generation = generation
        self.fence = fence

    def load(self, unit_name: str) -> Position | None:
        with self.store.session() as s:
            row = s.get(Checkpoint, unit_name)
            if row is None:
                return None
            return decode({"version": row.version, "position": row.position})

    def load_many(self, unit_names: list[str]) -> dict[str, Position]:
        if not unit_names:
            return {}
        with self.store.session() as s:
            rows = s.scalars(select(Checkpoint).where(Checkpoint.unit.in_(unit_names))).all()
            return {r.unit: decode({"version": r.version, "position": r.position}) for r in rows}

    def save(self, unit_name: str, position: Position) -> tuple[Saved, Position]:
        """Store ``position`` durably unless it is older than the stored one.

        Returns what happened and the position now stored. Raises :class:`Fenced` when the
        stored generation is newer than ours.
        """
        for _ in range(3):
            try:
                return self._save_once(unit_name, position)
            except IntegrityError:
                continue  # a concurrent first insert won; read it and decide again
        return self._save_once(unit_name, position)

    def _save_once(self, unit_name: str, position: Position) -> tuple[Saved, Position]:
        doc = encode(position)
        with self.store.session() as s:
            generation = self.generation
            if self.fence is not None:
                generation = self.fence.generation(s, unit_name)
            row = s.execute(
                select(Checkpoint).where(Checkpoint.unit == unit_name).with_for_update()
            ).scalar_one_or_none()
            if row is None:
                s.add(
                    Checkpoint(
                        unit=unit_name,
                        version=doc["version"],
                        position=doc["position"],
                        generation=generation,
                    )
                )
                return Saved.WRITTEN, position
            if row.generation > generation:
                raise Fenced(
                    f"checkpoint of {unit_name} is owned by generation {row.generation} "
                    f"(this worker has {generation}); another worker took over"
                )
            stored = decode({"version": row.version, "position": row.position})
            if positions.before(position, stored):
                return Saved.REFUSED_OLDER, stored
            if not positions.before(stored, position) and row.generation == generation:
                return Saved.UNCHANGED, stored
            row.version = doc["version"]
            row.position = doc["position"]
            row.generation = generation
            return Saved.WRITTEN, position
