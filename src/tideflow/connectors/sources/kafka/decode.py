"""Kafka messages → :class:`~tideflow.events.ChangeEvent`.

Three shapes of input:

- **Debezium envelopes** (``op`` plus ``before``/``after``), with or without a Kafka Connect
  schema: the event is rebuilt with its source table (``source.schema``/``source.table``, else
  ``source.db``, else the topic name), its upstream position (the position keys of ``source``,
  e.g. ``lsn``), commit time and transaction id. Column types come from the Connect schema
  when present (exactly, for envelopes written by Tideflow's Kafka destination), otherwise
  they are inferred from the JSON values. Tombstones after deletes are skipped.
- **Plain JSON** objects: a create event into table ``kafka.<topic>``; the message key (a JSON
  object) names the key columns; a tombstone deletes that key.
- **Strings** (``format=string``): a create event with columns ``partition``, ``offset`` (the
  key), ``key`` and ``value``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import orjson

from tideflow.connectors.sources.kafka import values
from tideflow.envelope import UNCHANGED_KEY
from tideflow.errors import TerminalError
from tideflow.events import UNCHANGED, ChangeEvent, Column, Op, TableSchema

KIND_PARAM: Final = "__tideflow.kind"
TYPE_PARAM: Final = "__debezium.source.column.type"
_OPS: Final = frozenset(op.value for op in Op)
# Keys of an envelope's ``source`` block that describe the source, not its position.
_SOURCE_INFO_KEYS: Final = frozenset(
    {
        "version",
        "connector",
        "name",
        "ts_ms",
        "ts_us",
        "ts_ns",
        "snapshot",
        "db",
        "schema",
        "table",
        "txId",
        "sequence",
        "xmin",
        "server_id",
        "thread",
        "query",
        "row",
    }
)
_SNAPSHOT_TRUE: Final = frozenset(
    {"true", "last", "first", "incremental", "last_in_data_collection", "first_in_data_collection"}
)
STRING_TABLE_COLUMNS: Final = (
    Column("partition", "int32", "int", nullable=False, key=True),
    Column("offset", "int64", "int", nullable=False, key=True),
    Column("key", "string", "text"),
    Column("value", "string", "text"),
)


@dataclass(frozen=True, slots=True)
class Received:
    """One consumed message, as the decoder needs it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class _Table:
    schema: TableSchema
    converters: tuple[tuple[str, Callable[[Any], Any]], ...]


def _unwrap(doc: Any) -> tuple[dict[str, Any] | None, Any]:
    """Split a Kafka Connect ``{"schema", "payload"}`` document; other documents have no schema."""
    if isinstance(doc, dict) and doc.keys() == {"schema", "payload"}:
        schema = doc["schema"]
        return (schema if isinstance(schema, dict) else None), doc["payload"]
    return None, doc


def _field(schema: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    for f in (schema or {}).get("fields") or ():
        if f.get("field") == name:
            return dict(f)
    return None


def _column_from_schema(f: dict[str, Any], key: bool) -> tuple[Column, Callable[[Any], Any]]:
    params = dict(f.get("parameters") or {})
    semantic = f.get("name")
    ctype = str(f.get("type", "string"))
    kind = params.get(KIND_PARAM) or values.SEMANTIC_KINDS.get(semantic or "")
    kind = kind or values.CONNECT_KINDS.get(ctype, "other")
    source_type = params.get(TYPE_PARAM) or semantic or ctype
    column = Column(
        name=str(f["field"]),
        type=str(source_type),
        kind=str(kind),
        nullable=bool(f.get("optional", True)),
        key=key,
    )
    return column, values.converter(column.kind, semantic, params)


class Decoder:
    """Decodes messages of many topics; caches one table shape per distinct schema.

    Not thread-safe (one per source instance).
    """

    def __init__(self, *, format: str) -> None:
        self.format = format
        self._tables: dict[tuple[Any, ...], _Table] = {}
        self._versions: dict[str, int] = {}
        self._envelope_topics: set[str] = set()
        self._latest: dict[tuple[str, str], _Table] = {}

    def decode(self, msg: Received) -> ChangeEvent | None:
        if self.format == "string":
            return self._string(msg)
        key_schema, key = _unwrap(_loads(msg.key, msg, "key")) if msg.key else (None, None)
        if msg.value is None:
            return self._tombstone(msg, key_schema, key)
        value_schema, payload = _unwrap(_loads(msg.value, msg, "value"))
        if (
            isinstance(payload, dict)
            and payload.get("op") in _OPS
            and ("after" in payload or "before" in payload)
        ):
            self._envelope_topics.add(msg.topic)
            return self._envelope(msg, key_schema, key, value_schema, payload)
        row = payload if isinstance(payload, dict) else {"value": payload}
        table = self._infer("kafka", msg.topic, key, [row])
        return ChangeEvent(
            op=Op.CREATE,
            table=table.schema,
            before=None,
            after=_convert(row, table),
            position=_kafka_position(msg),
            commit_ts_ms=msg.timestamp_ms,
        )

    def _string(self, msg: Received) -> ChangeEvent:
        table = self._table(("string", msg.topic), lambda: _string_table(msg.topic))
        row = {
            "partition": msg.partition,
            "offset": msg.offset,
            "key": None if msg.key is None else msg.key.decode("utf-8", "replace"),
            "value": None if msg.value is None else msg.value.decode("utf-8", "replace"),
        }
        return ChangeEvent(
            Op.CREATE, table.schema, None, row, _kafka_position(msg), msg.timestamp_ms
        )

    def _tombstone(
        self, msg: Received, key_schema: dict[str, Any] | None, key: Any
    ) -> ChangeEvent | None:
        # After an envelope delete the tombstone only tells compaction to drop the key.
        if msg.topic in self._envelope_topics or not isinstance(key, dict) or not key:
            return None
        table = self._infer("kafka", msg.topic, key, [key])
        return ChangeEvent(
            Op.DELETE,
            table.schema,
            _convert(key, table),
            None,
            _kafka_position(msg),
            msg.timestamp_ms,
        )

    def _envelope(
        self,
        msg: Received,
        key_schema: dict[str, Any] | None,
        key: Any,
        value_schema: dict[str, Any] | None,
        env: dict[str, Any],
    ) -> ChangeEvent:
        source = env.get("source") if isinstance(env.get("source"), dict) else {}
        assert isinstance(source, dict)
        schema_name, table_name = _table_name(source, msg.topic)
        before, after = env.get("before"), env.get("after")
        row_schema = _field(value_schema, "after") or _field(value_schema, "before")
        if row_schema is not None and row_schema.get("fields"):
            table = self._from_schema(schema_name, table_name, row_schema, key_schema, key)
        else:
            rows = [r for r in (after, before) if isinstance(r, dict)]
            table = self._infer(schema_name, table_name, key, rows)
        after_row = _convert(after, table) if isinstance(after, dict) else None
        if after_row is not None:
            for name in env.get(UNCHANGED_KEY) or ():
                after_row[name] = UNCHANGED
        position = {k: v for k, v in source.items() if k not in _SOURCE_INFO_KEYS}
        ts = source.get("ts_ms") if isinstance(source.get("ts_ms"), int) else env.get("ts_ms")
        txid = source.get("txId")
        return ChangeEvent(
            op=Op(env["op"]),
            table=table.schema,
            before=_convert(before, table) if isinstance(before, dict) else None,
            after=after_row,
            position=position or _kafka_position(msg),
            commit_ts_ms=int(ts) if isinstance(ts, int) else msg.timestamp_ms,
            txid=txid if isinstance(txid, int) else None,
            snapshot=str(source.get("snapshot", "false")).lower() in _SNAPSHOT_TRUE,
        )

    def _from_schema(
        self,
        schema_name: str,
        table_name: str,
        row_schema: dict[str, Any],
        key_schema: dict[str, Any] | None,
        key: Any,
    ) -> _Table:
        fields = row_schema.get("fields") or []
        version = int(row_schema.get("version") or 1)
        if key_schema is not None:
            key_names = tuple(str(f["field"]) for f in key_schema.get("fields") or ())
        elif isinstance(key, dict):
            key_names = tuple(key)
        else:
            # Keyless messages (truncates) keep the key of the table's latest shape.
            latest = self._latest.get((schema_name, table_name))
            same = latest is not None and latest.schema.version == version
            key_names = latest.schema.key if latest is not None and same else ()
        cache_key = (
            "schema",
            schema_name,
            table_name,
            version,
            key_names,
            tuple(
                (
                    f.get("field"),
                    f.get("type"),
                    f.get("name"),
                    f.get("optional"),
                    orjson.dumps(f.get("parameters"), option=orjson.OPT_SORT_KEYS),
                )
                for f in fields
            ),
        )

        def build() -> _Table:
            pairs = [_column_from_schema(f, str(f.get("field")) in key_names) for f in fields]
            table = TableSchema(
                schema_name, table_name, tuple(c for c, _ in pairs), key_names, version
            )
            return _Table(table, tuple((c.name, conv) for c, conv in pairs))

        found = self._table(cache_key, build)
        self._latest[(schema_name, table_name)] = found
        return found

    def _infer(
        self, schema_name: str, table_name: str, key: Any, rows: list[dict[str, Any]]
    ) -> _Table:
        latest = self._latest.get((schema_name, table_name))
        if not rows and not isinstance(key, dict) and latest is not None:
            return latest  # a truncate: no row to infer from
        key_names = tuple(key) if isinstance(key, dict) else ()
        kinds: dict[str, str | None] = {}
        for row in rows:
            for name, value in row.items():
                # Typed JSON values win over strings ("Infinity" is a float column's value).
                if value is not None and kinds.get(name) in (None, "text"):
                    kinds[name] = values.json_kind(value)
                kinds.setdefault(name, None)
        for name in key_names:
            if kinds.get(name) is None and key[name] is not None:
                kinds[name] = values.json_kind(key[name])
        # A column only ever seen as null is text until a value says otherwise.
        shape = tuple((n, k or "text") for n, k in kinds.items())
        cache_key = ("infer", schema_name, table_name, key_names, shape)

        def build() -> _Table:
            qualified = f"{schema_name}.{table_name}"
            version = self._versions[qualified] = self._versions.get(qualified, 0) + 1
            columns = tuple(
                Column(n, k, k, nullable=n not in key_names, key=n in key_names) for n, k in shape
            )
            table = TableSchema(schema_name, table_name, columns, key_names, version)
            # Schemaless values stay as JSON gave them: there is no type to convert to.
            return _Table(table, ())

        found = self._table(cache_key, build)
        self._latest[(schema_name, table_name)] = found
        return found

    def _table(self, cache_key: tuple[Any, ...], build: Callable[[], _Table]) -> _Table:
        table = self._tables.get(cache_key)
        if table is None:
            table = self._tables[cache_key] = build()
        return table


def _string_table(topic: str) -> _Table:
    table = TableSchema("kafka", topic, STRING_TABLE_COLUMNS, ("partition", "offset"))
    return _Table(table, ())


def _loads(data: bytes, msg: Received, what: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise TerminalError(
            f"message {msg.topic}[{msg.partition}]@{msg.offset}: {what} is not JSON ({exc}); "
            "use format=string for non-JSON topics",
            code="kafka_format",
        ) from None


def _convert(row: dict[str, Any], table: _Table) -> dict[str, Any]:
    out = dict(row)
    for name, convert in table.converters:
        if name in out:
            out[name] = convert(out[name])
    return out


def _table_name(source: dict[str, Any], topic: str) -> tuple[str, str]:
    table = source.get("table")
    schema = source.get("schema") or source.get("db")
    if isinstance(table, str) and table:
        return (str(schema) if schema else "kafka"), table
    parts = topic.split(".")
    if len(parts) >= 2:
        return parts[-2], parts[-1]
    return "kafka", topic


def _kafka_position(msg: Received) -> dict[str, Any]:
    return {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset}
