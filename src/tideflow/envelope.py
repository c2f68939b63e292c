"""The Debezium envelope: how a :class:`~tideflow.events.ChangeEvent` looks on the wire.

``{"before": {...}|null, "after": {...}|null, "source": {...}, "op": "c|u|d|r|t",
"ts_ms": <processing time>}`` with ``source`` = ``{"version", "connector", "name", "ts_ms"
(commit time), "snapshot" ("true"/"false"), "db", "schema", "table", "txId", <position keys>}``
(Postgres: ``"lsn"``).

Values are JSON-safe: ``Decimal`` → string (exact), ``datetime``/``date``/``time`` → ISO 8601,
``bytes`` → base64, non-finite floats → ``"NaN"``/``"Infinity"``/``"-Infinity"`` (JSON has no
such numbers and ``null`` would lie), arrays element-wise; every other kind is already a string,
number or boolean (see :data:`~tideflow.events.COLUMN_KINDS`).

Unchanged values (Postgres unchanged TOAST, :data:`~tideflow.events.UNCHANGED`) are never
rendered as a placeholder: the column is *omitted* from the image and its name is listed in a
top-level ``"__unchanged"`` array (present only when not empty), so a consumer can tell "not
sent" from ``null`` and keep the value it already has.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from tideflow import __version__
from tideflow.events import UNCHANGED, ChangeEvent, Op, TableSchema

UNCHANGED_KEY = "__unchanged"
_UNCHANGED_ID = id(UNCHANGED)


@dataclass(frozen=True, slots=True)
class SourceInfo:
    """What the envelope says about where events come from."""

    connector: str
    name: str
    db: str | None = None
    version: str = __version__


def json_value(value: Any) -> Any:
    """``value`` as a JSON-safe Python value (see the module docs)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date | dt.time):  # datetime is a date
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    return str(value)


def orjson_default(value: Any) -> Any:
    # Called by orjson only for types it does not serialise natively; Decimal (the common
    # case) by exact type first, which skips json_value's isinstance chain.
    if type(value) is Decimal:
        return str(value)
    return json_value(value)


class _HasUnchanged(Exception):
    """An image holds UNCHANGED: :meth:`Renderer.dumps` must leave that column out."""


def _strict_default(value: Any) -> Any:
    # orjson_default, but an UNCHANGED value aborts the dump (orjson raises JSONEncodeError)
    # so that dumps_many can render images as they are and fall back only when needed.
    if type(value) is Decimal:
        return str(value)
    if value is UNCHANGED:
        raise _HasUnchanged
    return json_value(value)


def _float_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return json_value(value)
    return value


@dataclass(frozen=True, slots=True)
class _RowPlan:
    # Columns whose values need a Python-side conversion before orjson (floats that may be
    # NaN, arrays that may hold them); everything else orjson renders natively or via default.
    converters: tuple[tuple[str, Callable[[Any], Any]], ...]


NATIVE_KINDS = frozenset(
    {
        "int",
        "bool",
        "text",
        "uuid",
        "json",
        "enum",
        "other",
        "interval",
        "timetz",
        "date",
        "time",
        "timestamp",
        "timestamptz",
        "decimal",
        "bytes",
    }
)


def _plan_for(table: TableSchema, *, full: bool) -> _RowPlan:
    converters: list[tuple[str, Callable[[Any], Any]]] = []
    for col in table.columns:
        if col.kind == "float":
            converters.append((col.name, _float_value))
        elif full or col.kind not in NATIVE_KINDS:
            converters.append((col.name, json_value))
    return _RowPlan(tuple(converters))


_SOURCE_FIXED = frozenset(
    {"version", "connector", "name", "ts_ms", "snapshot", "db", "schema", "table", "txId"}
)
_UNCHANGED_PART = b',"' + UNCHANGED_KEY.encode() + b'":'
_OPS = {op: b',"op":' + orjson.dumps(op.value) + b',"ts_ms":' for op in Op}
# before, after, source head, lsn, op part, ts_ms: the envelope of a Postgres event.
_LSN_ENVELOPE = b'{"before":%b,"after":%b,"source":%b,"lsn":%d}%b%b}'


class Renderer:
    """Renders events of many tables; caches a small plan per table schema.

    Not thread-safe (one per destination instance).
    """

    def __init__(self, info: SourceInfo) -> None:
        self.info = info
        self._plans: dict[tuple[int, bool], tuple[TableSchema, _RowPlan]] = {}
        # The source block without its position keys, as bytes without the closing brace:
        # the same for every event of one table in one transaction; and that table's plan.
        self._last_table: TableSchema | None = None
        self._last_txid: int | None = None
        self._last_commit_ts = 0
        self._last_snapshot = False
        self._last_plan = _RowPlan(())
        self._source_head = b""
        self._last_ts_ms: int | None = None
        self._ts_part = b""

    def _plan(self, table: TableSchema, full: bool) -> _RowPlan:
        # Keyed by identity: hashing a TableSchema walks all its columns on every call.
        entry = self._plans.get((id(table), full))
        if entry is None or entry[0] is not table:
            entry = (table, _plan_for(table, full=full))
            self._plans[(id(table), full)] = entry
        return entry[1]

    def _row(
        self, row: dict[str, Any] | None, plan: _RowPlan, unchanged: list[str] | None
    ) -> dict[str, Any] | None:
        if row is None:
            return None
        out = row
        if _UNCHANGED_ID in map(id, row.values()):  # identity: __eq__ is slow for Decimal
            out = {}
            for k, v in row.items():
                if v is UNCHANGED:
                    if unchanged is not None:
                        unchanged.append(k)
                else:
                    out[k] = v
        if plan.converters:
            if out is row:
                out = dict(row)
            for name, convert in plan.converters:
                if name in out:
                    out[name] = convert(out[name])
        return out

    def source(self, event: ChangeEvent) -> dict[str, Any]:
        block = self._source_fixed(event)
        block.update(event.position)
        return block

    def _source_fixed(self, event: ChangeEvent) -> dict[str, Any]:
        info = self.info
        return {
            "version": info.version,
            "connector": info.connector,
            "name": info.name,
            "ts_ms": event.commit_ts_ms,
            "snapshot": "true" if event.snapshot else "false",
            "db": info.db,
            "schema": event.table.schema,
            "table": event.table.table,
            "txId": event.txid,
        }

    def render(
        self, event: ChangeEvent, *, ts_ms: int | None = None, full: bool = True
    ) -> dict[str, Any]:
        """The envelope as a dict; with ``full`` every value is JSON-safe Python."""
        plan = self._plan(event.table, full)
        unchanged: list[str] = []
        out: dict[str, Any] = {
            "before": self._row(event.before, plan, None),
            "after": self._row(event.after, plan, unchanged),
            "source": self.source(event),
            "op": event.op.value,
            "ts_ms": int(time.time() * 1000) if ts_ms is None else ts_ms,
        }
        if unchanged:
            out[UNCHANGED_KEY] = unchanged
        return out

    def dumps(self, event: ChangeEvent, ts_ms: int | None = None) -> bytes:
        """The envelope as JSON bytes: byte for byte ``orjson.dumps`` of :meth:`render`.

        Spliced from parts rather than built as one dict: each image is serialised on its
        own, the source block without its position is serialised once per table and
        transaction, and a Postgres position is formatted as an integer.
        """
        position = event.position
        lsn = position.get("lsn")
        if type(lsn) is int and len(position) == 1:
            tail = b',"lsn":%d}' % lsn
        elif not position:
            tail = b"}"
        elif _SOURCE_FIXED.isdisjoint(position):
            tail = b"," + orjson.dumps(position, default=orjson_default)[1:]
        else:  # a position key would replace a fixed source field: keep render's semantics
            return orjson.dumps(self.render(event, ts_ms=ts_ms, full=False), default=orjson_default)
        table = event.table
        if (
            table is not self._last_table
            or event.txid != self._last_txid
            or event.commit_ts_ms != self._last_commit_ts
            or event.snapshot != self._last_snapshot
        ):
            head = orjson.dumps(self._source_fixed(event), default=orjson_default)
            self._source_head = head[:-1]
            if table is not self._last_table:
                self._last_plan = self._plan(table, False)
            self._last_table = table
            self._last_txid = event.txid
            self._last_commit_ts = event.commit_ts_ms
            self._last_snapshot = event.snapshot
        plan = self._last_plan
        if ts_ms is None:
            ts_ms = int(time.time() * 1000)
        if ts_ms != self._last_ts_ms:
            self._last_ts_ms = ts_ms
            self._ts_part = b"%d" % ts_ms
        before, after = event.before, event.after
        unchanged: list[str] = []
        # One join: chained ``+`` would allocate (malloc, at this size) once per part.
        parts = [
            b'{"before":',
            b"null"
            if before is None
            else orjson.dumps(self._row(before, plan, None), default=orjson_default),
            b',"after":',
            b"null"
            if after is None
            else orjson.dumps(self._row(after, plan, unchanged), default=orjson_default),
            b',"source":',
            self._source_head,
            tail,
            _OPS[event.op],
            self._ts_part,
        ]
        if unchanged:
            parts += (_UNCHANGED_PART, orjson.dumps(unchanged))
        parts.append(b"}")
        return b"".join(parts)

    def dumps_many(self, events: Sequence[ChangeEvent], ts_ms: int) -> list[bytes]:
        """``[self.dumps(e, ts_ms) for e in events]``, for less CPU per event.

        Events of the table and transaction whose source block :meth:`dumps` cached last, with
        a Postgres position and no value needing a conversion (the bulk of a streaming batch),
        are formatted here in one step; any other event, and any image holding UNCHANGED,
        goes through :meth:`dumps`, which also refreshes that cache.
        """
        out: list[bytes] = []
        append = out.append
        dumps, slow, ops = orjson.dumps, self.dumps, _OPS
        ts_part = b"%d" % ts_ms
        table: TableSchema | None = None
        txid: int | None = None
        commit_ts = 0
        snapshot = False
        head = b""
        for event in events:
            position = event.position
            lsn = position.get("lsn")
            if (
                event.table is table
                and event.txid == txid
                and event.commit_ts_ms == commit_ts
                and event.snapshot == snapshot
                and type(lsn) is int
                and len(position) == 1
            ):
                before, after = event.before, event.after
                try:
                    append(
                        _LSN_ENVELOPE
                        % (
                            b"null" if before is None else dumps(before, default=_strict_default),
                            b"null" if after is None else dumps(after, default=_strict_default),
                            head,
                            lsn,
                            ops[event.op],
                            ts_part,
                        )
                    )
                    continue
                except orjson.JSONEncodeError:
                    pass  # an UNCHANGED value: dumps() leaves it out and lists it
            append(slow(event, ts_ms))
            # The cached head, plan and their table/transaction always belong together.
            table = self._last_table if not self._last_plan.converters else None
            txid, commit_ts = self._last_txid, self._last_commit_ts
            snapshot, head = self._last_snapshot, self._source_head
        return out


def render(event: ChangeEvent, info: SourceInfo, *, ts_ms: int | None = None) -> dict[str, Any]:
    """Render one event (convenience; use a :class:`Renderer` for many)."""
    return Renderer(info).render(event, ts_ms=ts_ms)
