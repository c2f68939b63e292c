"""Durable pipeline positions in the metadata store (table ``checkpoints``).

Format (invariant 7): the row's ``version`` column plus ``position`` form the versioned
document ``{"version": 1, "position": {...}}``; :func:`decode` upgrades older versions by code
and refuses unknown newer ones. Writes are forward-only (invariant 2) and fenced by a
generation number: a writer whose generation is older than the stored one is refused, so a
worker that lost its lease cannot move a checkpoint back (cluster mode).
"""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

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


class Checkpoints:
    """Reads and writes checkpoints; safe to use from several threads (one session per call)."""

    def __init__(self, store: Store, *, generation: int = 0) -> None:
        self.store = store
        self.generation = generation

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
            row = s.execute(
                select(Checkpoint).where(Checkpoint.unit == unit_name).with_for_update()
            ).scalar_one_or_none()
            if row is None:
                s.add(
                    Checkpoint(
                        unit=unit_name,
                        version=doc["version"],
                        position=doc["position"],
                        generation=self.generation,
                    )
                )
                return Saved.WRITTEN, position
            if row.generation > self.generation:
                raise Fenced(
                    f"checkpoint of {unit_name} is owned by generation {row.generation} "
                    f"(this worker has {self.generation}); another worker took over"
                )
            stored = decode({"version": row.version, "position": row.position})
            if positions.before(position, stored):
                return Saved.REFUSED_OLDER, stored
            if not positions.before(stored, position) and row.generation == self.generation:
                return Saved.UNCHANGED, stored
            row.version = doc["version"]
            row.position = doc["position"]
            row.generation = self.generation
            return Saved.WRITTEN, position
