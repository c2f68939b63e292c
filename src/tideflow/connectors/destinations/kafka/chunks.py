"""Kafka keys and envelopes of a whole snapshot chunk, straight from its COPY text.

A :class:`~tideflow.events.SnapshotChunk` expanded into one :class:`ChangeEvent` per row costs
about 8 µs a row before a message is produced (each field parsed into a Python value, an event
object, the value rendered back to JSON). Here the chunk is rendered column by column instead:
the data is split into fields in one C call, each column's JSON fragments are made in one pass
(integers, plain texts and decimals are their COPY text as is, quoted where JSON quotes them),
and each row is one ``%`` format of a per-chunk template. Only the chunk's neutral description
(:attr:`~tideflow.events.SnapshotChunk.fields`, see :mod:`tideflow.copytext`) says how a field's
text becomes its value; a chunk without one goes as events. Whatever cannot be proven to give the
same bytes (a value needing escapes, an uncommon type) goes through the field's own converter and
the ``orjson`` settings the event path uses, so every message is byte for byte what
:meth:`~tideflow.connectors.destinations.kafka.serializer.Serializer.value` and ``key`` give
for the chunk's events (tests/integration/test_kafka_chunks.py compares them for every type).

The envelope around the row (source block, ``op``, ``ts_ms``, schemas) is taken from the
serializer itself, rendered once per chunk for a probe event with a marker image.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from tideflow.connectors.destinations.kafka.serializer import Serializer
from tideflow.copytext import NULL as _NULL
from tideflow.copytext import Field, unescape
from tideflow.envelope import NATIVE_KINDS, json_value, orjson_default
from tideflow.events import ChangeEvent, Op, SnapshotChunk, TableSchema

# Bytes a JSON string must escape (orjson: quote, backslash, controls) or COPY escapes
# (backslash); DEL is left to orjson too, to be safe. Tab and newline separate fields.
_UNSAFE = re.compile(rb'[\x00-\x08\x0b-\x1f"\\\x7f]')
# Decimals whose str() differs from Postgres' text: 7+ zeros after the point read as 1E-7.
_TINY = re.compile(rb"(?:^|\t)-?0\.000000")
# UTC timestamps (the pinned session time zone) whose ISO form is the text with a "T" and the
# offset's minutes: no fraction, or all six digits (orjson prints microseconds in full).
_UTC_TIMES = re.compile(rb"(?:[1-9]\d{3}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{6})?\+00(?:\t|\Z))+")
_MARK = "\x00tideflow-row"
_MARK_JSON = orjson.dumps({_MARK: 0})

Keys = list[bytes | None]


def render(
    serializer: Serializer, chunk: SnapshotChunk, topic: str, ts_ms: int
) -> tuple[Keys, list[bytes]] | None:
    """The chunk's message keys and values, in line order; None when this chunk cannot be
    rendered here (its source did not describe its fields): expand it to events."""
    fields = chunk.fields
    if fields is None or tuple(f.name for f in fields) != chunk.columns or not chunk.rows:
        return None
    table = chunk.table
    kinds = {c.name: c.kind for c in table.columns}
    if any(f.name not in kinds for f in fields):
        return None
    envelope = _envelope(serializer, chunk, topic, ts_ms)
    if envelope is None:
        return None
    ncols = len(fields)
    flat = chunk.data[:-1].replace(b"\n", b"\t").split(b"\t")
    if len(flat) != chunk.rows * ncols:
        return None
    columns = [flat[i::ncols] for i in range(ncols)]
    parts: list[bytes] = []
    fragments: list[Sequence[bytes]] = []
    for f, col in zip(fields, columns, strict=True):
        quoted, values = _fragments(kinds[f.name], f, col)
        label = orjson.dumps(f.name).replace(b"%", b"%%") + b":"
        parts.append(label + (b'"%b"' if quoted else b"%b"))
        fragments.append(values)
    head, tail = envelope
    template = head + b"{" + b",".join(parts) + b"}" + tail
    values = [template % row for row in zip(*fragments, strict=True)]
    return _keys(serializer, chunk, fields, columns, topic), values


def _envelope(
    serializer: Serializer, chunk: SnapshotChunk, topic: str, ts_ms: int
) -> tuple[bytes, bytes] | None:
    """The value bytes before and after the ``after`` image (``%`` escaped), from the
    serializer's own rendering of an event of this chunk."""
    probe = ChangeEvent(Op.READ, chunk.table, None, {_MARK: 0}, {}, chunk.commit_ts_ms, None, True)
    out = serializer.value(probe, topic, ts_ms)
    if out.count(_MARK_JSON) != 1:
        return None
    head, tail = out.split(_MARK_JSON)
    return head.replace(b"%", b"%%"), tail.replace(b"%", b"%%")


def _fragments(kind: str, f: Field, col: list[bytes]) -> tuple[bool, Sequence[bytes]]:
    """One column's JSON values: (True, texts) when each is its COPY text in quotes,
    (False, fragments) otherwise."""
    nulls = _NULL in col
    parse, convert = f.parse, f.convert
    if kind == "int" and parse == "int" and not nulls:
        return False, col  # an "int" field's text is the integer as JSON writes it
    plain = kind in NATIVE_KINDS and kind != "float" and parse == "text"
    if plain and not nulls and _UNSAFE.search(b"\t".join(col)) is None:
        return True, col
    decimal = parse == "decimal" and kind == "decimal" and not nulls
    if decimal and _TINY.search(b"\t".join(col)) is None:
        return True, col  # str(Decimal(text)) == text, rendered as a JSON string
    if parse == "timestamptz" and kind == "timestamptz" and not nulls:
        joined = b"\t".join(col)
        if _UTC_TIMES.fullmatch(joined) is not None:
            return True, joined.replace(b" ", b"T").replace(b"+00", b"+00:00").split(b"\t")
    value = _value_json(kind, convert)
    if plain:  # a text needing no escape is its COPY text in quotes
        unsafe = _UNSAFE.search
        return False, [
            b"null" if raw == _NULL else value(raw) if unsafe(raw) else b'"' + raw + b'"'
            for raw in col
        ]
    return False, [b"null" if raw == _NULL else value(raw) for raw in col]


def _value_json(kind: str, convert: Callable[[str], Any] | None) -> Callable[[bytes], bytes]:
    """A field's JSON as the event path renders it: converted, then the envelope's rules
    (floats and kinds orjson does not render natively through ``json_value``)."""
    native = kind in NATIVE_KINDS and kind != "float"
    dumps = orjson.dumps

    def value(raw: bytes) -> bytes:
        text = unescape(raw.decode())
        v = convert(text) if convert is not None else text
        return dumps(v if native else json_value(v), default=orjson_default)

    return value


def _keys(
    serializer: Serializer,
    chunk: SnapshotChunk,
    fields: tuple[Field, ...],
    columns: list[list[bytes]],
    topic: str,
) -> Keys:
    table = chunk.table
    if not table.key:
        return [None] * chunk.rows
    index = {f.name: i for i, f in enumerate(fields)}
    if any(k not in index for k in table.key):
        return [serializer.key(e, topic) for e in chunk.events()]
    if not serializer.schemas and len(table.key) == 1:
        i = index[table.key[0]]
        fmt = _int_key_format(serializer, table)
        if fmt is not None and fields[i].parse == "int" and _NULL not in columns[i]:
            return list(map(fmt.__mod__, columns[i]))
    # Other keys: events holding only the key columns, through the serializer.
    picked = [(k, fields[index[k]].convert, columns[index[k]]) for k in table.key]
    out: Keys = []
    for n in range(chunk.rows):
        row = {k: _field(convert, col[n]) for k, convert, col in picked}
        event = ChangeEvent(Op.READ, table, None, row, {}, chunk.commit_ts_ms, None, True)
        out.append(serializer.key(event, topic))
    return out


def _int_key_format(serializer: Serializer, table: TableSchema) -> bytes | None:
    """``b'{"id":%b}'`` for a table keyed by one integer column (the serializer's format)."""
    probe = ChangeEvent(Op.READ, table, None, {table.key[0]: 0}, {}, 0, None, True)
    key = serializer.key(probe, "")
    if key is None or not key.endswith(b":0}"):
        return None
    return key[:-2].replace(b"%", b"%%") + b"%b}"


def _field(convert: Callable[[str], Any] | None, raw: bytes) -> Any:
    if raw == _NULL:
        return None
    text = unescape(raw.decode())
    return convert(text) if convert is not None else text


def event(chunk: SnapshotChunk, index: int) -> ChangeEvent:
    """The event of the chunk's ``index``-th line (for error paths: splits the whole chunk)."""
    line = chunk.lines()[index]
    row = chunk.decode(line)
    return ChangeEvent(Op.READ, chunk.table, None, row, {}, chunk.commit_ts_ms, None, True)
