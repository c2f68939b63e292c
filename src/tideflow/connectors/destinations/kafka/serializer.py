"""Message keys and values of the Kafka destination.

Key: the primary key columns as a JSON object (``null`` for keyless tables, as Debezium
does). Value: the Debezium envelope rendered by :mod:`tideflow.envelope`. With schemas, both
are wrapped as Kafka Connect ``{"schema", "payload"}`` documents (see :mod:`.schema`); the
schema JSON is serialised once per table and spliced in, so schemas cost bytes, not CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from tideflow.connectors.destinations.kafka import schema
from tideflow.envelope import Renderer, SourceInfo, json_value
from tideflow.events import ChangeEvent, TableSchema


def infer_connector(position: dict[str, Any]) -> str:
    """The source connector code a position shape belongs to (used without a SourceInfo)."""
    if "lsn" in position:
        return "postgresql"
    if "offsets" in position:
        return "kafkadirect"
    if "file" in position or "gtid" in position:
        return "mysql"
    return "tideflow"


class Serializer:
    """Turns events into (key, value) bytes. Not thread-safe (one per destination).

    ``source`` describes the events' source in the envelope; without it the connector is
    inferred from the position shape and ``name`` is used as the server name.
    """

    def __init__(self, *, schemas: bool, name: str, source: SourceInfo | None = None) -> None:
        self.schemas = schemas
        self._name = name
        self._source = source
        self._renderers: dict[str, Renderer] = {}
        self._schema_cache: dict[tuple[Any, ...], tuple[TableSchema, bytes]] = {}
        self._fixed = Renderer(source) if source is not None else None
        self._key_formats: dict[int, tuple[TableSchema, bytes | None]] = {}

    def _renderer(self, event: ChangeEvent) -> Renderer:
        if self._fixed is not None:
            return self._fixed
        connector = infer_connector(event.position)
        renderer = self._renderers.get(connector)
        if renderer is None:
            info = self._source or SourceInfo(connector=connector, name=self._name)
            renderer = self._renderers[connector] = Renderer(info)
        return renderer

    def _schema(self, kind: str, event: ChangeEvent, topic: str, connector: str) -> bytes:
        # Position keys, not their value types: a connector's position shape is stable.
        cache_key = (kind, id(event.table), topic, connector, tuple(event.position))
        cached = self._schema_cache.get(cache_key)
        # The TableSchema is kept in the entry so its id cannot be reused by another object.
        if cached is not None and cached[0] is event.table:
            return cached[1]
        if kind == "key":
            doc = schema.key_schema(event.table, topic)
        else:
            doc = schema.envelope_schema(event.table, topic, connector, event.position)
        data = orjson.dumps(doc)
        self._schema_cache[cache_key] = (event.table, data)
        return data

    def _key_format(self, table: TableSchema) -> bytes | None:
        """``b'{"id":%d}'`` for a table keyed by one integer column, else None."""
        entry = self._key_formats.get(id(table))
        if entry is None or entry[0] is not table:
            fmt = None
            col = table.column(table.key[0]) if len(table.key) == 1 else None
            if col is not None and col.kind == "int":
                name = orjson.dumps(col.name).replace(b"%", b"%%")
                fmt = b"{" + name + b":%d}"
            entry = self._key_formats[id(table)] = (table, fmt)
        return entry[1]

    def key(self, event: ChangeEvent, topic: str) -> bytes | None:
        table = event.table
        if not table.key:
            return None
        row = event.after if event.after is not None else event.before
        if row is None:
            return None
        entry = self._key_formats.get(id(table))
        fmt = entry[1] if entry is not None and entry[0] is table else self._key_format(table)
        value = row.get(table.key[0]) if fmt is not None else None
        if fmt is not None and type(value) is int:  # not bool: that renders as true/false
            payload = fmt % value
        else:
            payload = orjson.dumps({k: json_value(row.get(k)) for k in table.key})
        if not self.schemas:
            return payload
        connector = self._renderer(event).info.connector
        return (
            b'{"schema":'
            + self._schema("key", event, topic, connector)
            + (b',"payload":' + payload + b"}")
        )

    def keys(self, events: Sequence[ChangeEvent], topic: str) -> list[bytes | None]:
        """``[self.key(e, topic) for e in events]``; cheapest for a run of one table."""
        if not events or self.schemas:
            return [self.key(e, topic) for e in events]
        table = events[0].table
        fmt = self._key_format(table) if table.key else None
        if fmt is None:
            return [self.key(e, topic) for e in events]
        name = table.key[0]
        out: list[bytes | None] = []
        append, key = out.append, self.key
        for event in events:
            row = event.after if event.after is not None else event.before
            value = row.get(name) if row is not None else None
            if type(value) is int and event.table is table:  # not bool, as in key()
                append(fmt % value)
            else:
                append(key(event, topic))
        return out

    def plain(self) -> Renderer | None:
        """The renderer whose ``dumps(event, ts_ms)`` is :meth:`value` (no schemas, one source):
        the destination calls it directly, one Python call less per message."""
        return self._fixed if not self.schemas else None

    def value(self, event: ChangeEvent, topic: str, ts_ms: int | None = None) -> bytes:
        """The envelope; ``ts_ms`` is its processing time (now when None)."""
        renderer = self._renderer(event)
        payload = renderer.dumps(event, ts_ms)
        if not self.schemas:
            return payload
        doc_schema = self._schema("value", event, topic, renderer.info.connector)
        return b'{"schema":' + doc_schema + b',"payload":' + payload + b"}"
