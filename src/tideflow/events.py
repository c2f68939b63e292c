"""The change event: the one record type that flows from sources to destinations.

A source turns what it reads into a stream of :data:`Record` values: :class:`ChangeEvent` for
row changes, :class:`Commit` at every transaction end (and for heartbeats/keepalives that only
move the position), and :class:`Message` for logical messages (e.g. snapshot watermarks). The
runtime batches records and only ever acknowledges upstream a :class:`Commit` position
(invariant 1), so a restart resumes at a transaction boundary.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from tideflow.copytext import Field


class Op(enum.StrEnum):
    """Operation codes, spelled as in the Debezium envelope."""

    CREATE = "c"
    UPDATE = "u"
    DELETE = "d"
    READ = "r"  # a row copied by a snapshot
    TRUNCATE = "t"


class _Unchanged:
    """Marker for a value the source did not send (Postgres unchanged TOAST).

    It is a distinct object, never a string, so it cannot leak into a destination as data:
    writers must leave such a column as it is.
    """

    _instance: _Unchanged | None = None

    def __new__(cls) -> _Unchanged:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNCHANGED"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = _Unchanged()


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a source table.

    ``type`` is the source's own type name (e.g. ``numeric(12,2)``, ``timestamptz``,
    ``int4[]``); ``kind`` is the portable family destinations map from (see
    :data:`COLUMN_KINDS`).
    """

    name: str
    type: str
    kind: str
    nullable: bool = True
    key: bool = False


#: Portable column families. Values in events have these Python types:
#: int → int, float → float, decimal → decimal.Decimal, bool → bool, text → str,
#: bytes → bytes, date → datetime.date, time → datetime.time, timetz → str,
#: timestamp → datetime.datetime (naive), timestamptz → datetime.datetime (aware, UTC),
#: interval → str (ISO 8601 duration), uuid → str, json → str (the JSON text, unparsed),
#: array → list, enum → str, other → str (the source's text form; never dropped).
COLUMN_KINDS: Final = frozenset(
    {
        "int",
        "float",
        "decimal",
        "bool",
        "text",
        "bytes",
        "date",
        "time",
        "timetz",
        "timestamp",
        "timestamptz",
        "interval",
        "uuid",
        "json",
        "array",
        "enum",
        "other",
    }
)


@dataclass(frozen=True, slots=True)
class TableSchema:
    """A table's shape as the source knows it; ``version`` grows on every change."""

    schema: str
    table: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    version: int = 1

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"

    def column(self, name: str) -> Column | None:
        for c in self.columns:
            if c.name == name:
                return c
        return None


@dataclass(slots=True)
class ChangeEvent:
    """One row change.

    ``before`` is present for updates/deletes when the source has it (replica identity);
    ``after`` for creates/updates/reads. Values follow :data:`COLUMN_KINDS`; a value the source
    did not send is :data:`UNCHANGED`. ``position`` is the source position of this event (for
    ordering and diagnostics only, never acknowledged by itself); ``commit_ts_ms`` is the
    source commit time in epoch milliseconds.
    """

    op: Op
    table: TableSchema
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    position: dict[str, Any]
    commit_ts_ms: int
    txid: int | None = None
    snapshot: bool = False

    def key(self) -> tuple[Any, ...]:
        row = self.after if self.after is not None else self.before
        if row is None:
            return ()
        return tuple(row.get(k) for k in self.table.key)


@dataclass(frozen=True, slots=True)
class Commit:
    """The end of a transaction, or a heartbeat/keepalive that moves the position.

    Once every event before it is durable, ``position`` may be checkpointed and acknowledged
    upstream. ``position`` is the source's serialised position (see ``Position`` in
    :mod:`tideflow.connectors.base`).
    """

    position: dict[str, Any]
    commit_ts_ms: int
    heartbeat: bool = False


@dataclass(frozen=True, slots=True)
class Message:
    """A logical message written into the change stream (e.g. a snapshot watermark)."""

    prefix: str
    content: bytes
    position: dict[str, Any]
    transactional: bool = False


@dataclass(slots=True)
class SnapshotChunk:
    """The rows of one snapshot chunk (``op=r``), carried as COPY text lines.

    Emitted by the snapshot coordinator in place of one :class:`ChangeEvent` per row, where
    the chunk sits in the stream (at its high watermark, after reconciliation). ``data`` holds
    ``rows`` lines in COPY text format (:mod:`tideflow.copytext`), each ending in ``\\n``, whose
    tab-separated fields are the values of ``columns`` (the source's output text of each value,
    which is what the ``decode`` of a line turns into event values). ``exact``: each field's
    text is the text form of its event value (false when a value is re-encoded, e.g. bytea as
    base64), so a destination may load the lines as they are into columns of the types it maps.

    ``fields``, when the source gives it, describes the lines without the source's help: one
    :class:`~tideflow.copytext.Field` per column, in ``columns`` order and named as they are,
    such that ``decode(line)`` maps each name to None for ``\\N`` and otherwise to the field's
    ``convert`` of its unescaped text (the text itself when ``convert`` is None), a value of the
    column's ``kind``. A destination may render lines from ``fields`` and ``table`` alone; when
    ``fields`` is None it must go through ``decode`` (or :meth:`events`).

    A destination that cannot take a chunk gets :meth:`events` instead (the runtime expands
    it); the two carry the same rows.

    ``ends`` set makes it a *binary* chunk (ADR 0005): ``data`` is rows of ``COPY ... (FORMAT
    binary)`` without the stream's header and trailer, row ``i`` ending at ``ends[i]``, and
    ``fields`` is None. ``decode`` and ``key`` take one such row and give what they give for
    the row's text line. Sources send binary chunks only where every pipeline loads them as
    they are (see ``takes_binary_chunks`` on destinations); anything else goes through
    :meth:`events`.
    """

    table: TableSchema
    columns: tuple[str, ...]
    data: bytes
    rows: int
    decode: Callable[[bytes], dict[str, Any]]
    #: a line's key (the values of the snapshot's key columns), as streamed changes carry it
    key: Callable[[bytes], tuple[Any, ...]]
    commit_ts_ms: int = 0
    exact: bool = True
    fields: tuple[Field, ...] | None = None
    ends: Sequence[int] | None = None

    @property
    def binary(self) -> bool:
        return self.ends is not None

    def lines(self) -> list[bytes]:
        """One ``bytes`` per row (text: without its newline)."""
        if self.ends is not None:
            data, ends = self.data, self.ends
            return [data[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=False)]
        return self.data.split(b"\n")[:-1] if self.data else []

    def parts(self, count: int) -> list[bytes]:
        """``data`` cut between rows into at most ``count`` pieces of about equal size."""
        if self.ends is None:
            return _split_lines(self.data, count)
        ends, out, start = self.ends, [], 0
        for i in range(1, count):
            row = len(ends) * i // count  # the part ends after this many rows
            cut = ends[row - 1] if row else 0
            if cut > start:
                out.append(self.data[start:cut])
                start = cut
        if start < len(self.data):
            out.append(self.data[start:])
        return out

    def keeping(self, lines: list[bytes]) -> SnapshotChunk:
        """This chunk with only ``lines`` (some of :meth:`lines`, in order)."""
        if self.ends is None:
            data = b"\n".join(lines) + b"\n" if lines else b""
            return dataclasses.replace(self, data=data, rows=len(lines))
        ends = list(itertools.accumulate(map(len, lines)))
        return dataclasses.replace(self, data=b"".join(lines), rows=len(lines), ends=ends)

    def events(self) -> list[ChangeEvent]:
        decode, table, ts = self.decode, self.table, self.commit_ts_ms
        read = Op.READ
        return [ChangeEvent(read, table, None, decode(x), {}, ts, None, True) for x in self.lines()]


Record = ChangeEvent | Commit | Message | SnapshotChunk


def _split_lines(data: bytes, parts: int) -> list[bytes]:
    """``data`` (whole lines) cut at line ends into ``parts`` pieces of about equal size."""
    out: list[bytes] = []
    start = 0
    for i in range(1, parts):
        cut = data.find(b"\n", max(start, len(data) * i // parts - 1)) + 1
        if cut <= start:
            break
        out.append(data[start:cut])
        start = cut
    if start < len(data):
        out.append(data[start:])
    return out


@dataclass(slots=True)
class Batch:
    """A bounded run of records handed from a source to a pipeline.

    ``position`` is the last :class:`Commit` position inside or before the batch: once the
    batch is durable at the destination, that position may be checkpointed (invariant 1).
    A batch may end mid-transaction; its ``position`` then still points at the previous
    commit, so a restart replays the partial transaction (duplicates, never gaps: invariant 2).
    """

    events: list[ChangeEvent] = field(default_factory=list)
    position: dict[str, Any] | None = None
    last_commit_ts_ms: int | None = None
    bytes: int = 0
    #: a batch holding a snapshot chunk holds nothing else (``events`` is empty)
    chunk: SnapshotChunk | None = None
