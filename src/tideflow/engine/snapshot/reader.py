"""What a source connector provides so the snapshot engine can read its tables.

A source that supports snapshots has a method ``snapshot_readers()`` (called on the source
runner thread, after ``open``) returning a :data:`ReaderFactory`. The engine calls the factory
once per reading thread; each :class:`ChunkReader` is then used by that one thread only and
holds its own plain (non-replication) connection. Keys travel as tuples of the database's text
form of the key columns (JSON-serialisable, so progress can be persisted); rows are dicts of
values converted exactly as the streaming decoder converts them, so a chunk row's key equals
the key of a streamed change of the same row. A reader may return a chunk's rows as one
:class:`~tideflow.events.SnapshotChunk` of COPY text instead (whose ``decode`` gives those
same dicts): the engine then reconciles and emits the text, and only destinations that cannot
load it get events. A reader with an attribute ``binary_chunks`` may return binary chunks
(``SnapshotChunk.ends`` set) once the engine sets it True, which it does only when every
pipeline of the source loads binary chunks as they are (ADR 0005).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from tideflow.events import SnapshotChunk, TableSchema

TextKey = tuple[str, ...]


class SnapshotError(Exception):
    """A table cannot be snapshotted as asked (no key, bad filter, unknown table)."""


@dataclass(frozen=True, slots=True)
class TablePlan:
    """How one table is read: its shape, the key chunks are ordered by, a row estimate."""

    schema: TableSchema
    key: tuple[str, ...]  # primary key or surrogate key columns; () = keyless
    estimate: int


@dataclass(slots=True)
class ChunkRows:
    """A chunk as read: ``rows`` as dicts, or (readers that can) every row in ``chunk``."""

    rows: list[dict[str, Any]]
    last: TextKey | None  # text key of the last row read (None: no row)
    #: the rows as COPY text instead of ``rows``; its lines start with the plan's key fields
    chunk: SnapshotChunk | None = None

    @property
    def count(self) -> int:
        return self.chunk.rows if self.chunk is not None else len(self.rows)


class ChunkReader(Protocol):
    def plan(self, table: str, surrogate_key: str | None) -> TablePlan:
        """Describe ``schema.table``; raises :class:`SnapshotError` for unknown tables."""
        ...

    def check_filter(self, table: str, predicate: str) -> None:
        """Raise :class:`SnapshotError` unless ``predicate`` compiles against the table."""
        ...

    def boundary(
        self, plan: TablePlan, after: TextKey | None, size: int, predicate: str | None
    ) -> TextKey | None:
        """Key of the ``size``-th row after ``after`` (None: fewer rows are left)."""
        ...

    def watermark(self, body: str) -> None:
        """Write a watermark into the change stream (its own committed transaction)."""
        ...

    def read_chunk(
        self,
        plan: TablePlan,
        after: TextKey | None,
        upto: TextKey | None,
        predicate: str | None,
    ) -> ChunkRows:
        """Rows with ``after < key <= upto`` (bounds optional) in key order, READ ONLY."""
        ...

    def scan(
        self, plan: TablePlan, predicate: str | None, size: int
    ) -> Iterator[list[dict[str, Any]]] | Iterator[SnapshotChunk]:
        """Every row of the table from one consistent read, ``size`` rows at a time (as rows,
        or as COPY text chunks from readers that offer them). Closing the iterator early ends
        the read."""
        ...

    def close(self) -> None: ...


ReaderFactory = Callable[[], ChunkReader]
