"""``enrich``: add fields to each record from a row of a Postgres table, looked up by key.

Config (all keys under ``transforms.enrich.``; see docs/transforms.md):

- ``hostname``, ``port`` (5432), ``database``, ``user``, ``password`` (optional: libpq then
  uses ``PGPASSWORD``/``~/.pgpass`` of the server), ``sslmode`` (``prefer``)
- ``table``: ``schema.table`` (or ``table`` in ``public``)
- ``key.mapping``: ``{"<record field>": "<table column>", ...}`` — the lookup key
- ``fields``: ``["<column>", ...]`` or ``{"<column>": "<new field name>", ...}``
- ``on.miss``: ``null`` (add the fields as null, default) | ``keep`` (record unchanged) |
  ``drop`` (drop the record) | ``fail`` (a failed record: the poison policy decides)
- ``cache.ttl.ms`` (60000; 0 = no cache), ``cache.max.entries`` (10000)

A batch costs at most one query: the keys not in the cache are looked up together. Hits and
misses are both cached for the TTL. Runs in the engine process (no user code, no sandbox).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
from psycopg import sql

from tideflow.engine.transforms.records import Input, Output
from tideflow.engine.transforms.runtime import Failure, Result
from tideflow.envelope import json_value
from tideflow.errors import Invalid, TerminalError

PREFIX = "transforms.enrich."
ON_MISS = ("null", "keep", "drop", "fail")
Key = tuple[str, ...]
Row = dict[str, Any]


@dataclass(frozen=True)
class EnrichConfig:
    hostname: str
    port: int
    database: str
    user: str
    password: str | None
    sslmode: str
    schema: str
    table: str
    key_mapping: tuple[tuple[str, str], ...]  # (record field, table column)
    fields: tuple[tuple[str, str], ...]  # (table column, output field)
    on_miss: str
    ttl_ms: int
    max_entries: int

    @property
    def table_name(self) -> str:
        return f"{self.schema}.{self.table}"

    def conninfo(self) -> str:
        parts = {
            "host": self.hostname,
            "port": self.port,
            "dbname": self.database,
            "user": self.user,
            "sslmode": self.sslmode,
            "connect_timeout": 10,
            "application_name": "tideflow-enrich",
        }
        if self.password is not None:
            parts["password"] = self.password
        return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in parts.items()})


def _text(config: Mapping[str, Any], name: str, default: str | None) -> str | None:
    value = config.get(PREFIX + name, default)
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise Invalid(f"config key '{PREFIX}{name}' must be a non-empty string")
    return value


def _number(config: Mapping[str, Any], name: str, default: int, minimum: int) -> int:
    value = config.get(PREFIX + name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise Invalid(f"config key '{PREFIX}{name}' must be an integer >= {minimum}")
    return value


def _names(value: Any, key: str, mapping_ok: bool, list_ok: bool) -> tuple[tuple[str, str], ...]:
    if mapping_ok and isinstance(value, dict) and value:
        pairs = tuple(value.items())
    elif list_ok and isinstance(value, list) and value:
        pairs = tuple((v, v) for v in value)
    else:
        shape = "a non-empty object" + (" or list" if list_ok else "")
        raise Invalid(f"config key '{key}' must be {shape} of column names")
    if not all(isinstance(a, str) and a and isinstance(b, str) and b for a, b in pairs):
        raise Invalid(f"config key '{key}' must name columns and fields with non-empty strings")
    return pairs


REQUIRED = ("hostname", "database", "user", "table", "key.mapping", "fields")


def parse(config: Mapping[str, Any], *, complete: bool = True) -> EnrichConfig | None:
    """The enrich settings of a transform config; raises :class:`Invalid` naming the key.

    With ``complete=False`` (saving a config) missing required keys are allowed and None is
    returned; the keys present must still be valid."""
    missing = [PREFIX + k for k in REQUIRED if config.get(PREFIX + k) is None]
    key_mapping = config.get(PREFIX + "key.mapping")
    fields = config.get(PREFIX + "fields")
    checked_keys = (
        _names(key_mapping, PREFIX + "key.mapping", True, False) if key_mapping is not None else ()
    )
    checked_fields = _names(fields, PREFIX + "fields", True, True) if fields is not None else ()
    hostname = _text(config, "hostname", None)
    database = _text(config, "database", None)
    user = _text(config, "user", None)
    table = _text(config, "table", None)
    password = config.get(PREFIX + "password")
    if password is not None and not isinstance(password, str):
        raise Invalid(f"config key '{PREFIX}password' must be a string")
    sslmode = _text(config, "sslmode", "prefer")
    on_miss = config.get(PREFIX + "on.miss", "null")
    if on_miss not in ON_MISS:
        raise Invalid(f"config key '{PREFIX}on.miss' must be one of {', '.join(ON_MISS)}")
    port = _number(config, "port", 5432, 1)
    ttl = _number(config, "cache.ttl.ms", 60_000, 0)
    entries = _number(config, "cache.max.entries", 10_000, 1)
    if table is not None and (table.count(".") > 1 or table.startswith(".") or table.endswith(".")):
        raise Invalid(f"config key '{PREFIX}table' must be 'schema.table' or 'table'")
    if missing:
        if complete:
            raise Invalid(f"config key(s) {', '.join(missing)} are required for enrich")
        return None
    assert hostname and database and user and table and sslmode
    schema, _, name = table.rpartition(".")
    return EnrichConfig(
        hostname=hostname,
        port=port,
        database=database,
        user=user,
        password=password,
        sslmode=sslmode,
        schema=schema or "public",
        table=name,
        key_mapping=checked_keys,
        fields=checked_fields,
        on_miss=str(on_miss),
        ttl_ms=ttl,
        max_entries=entries,
    )


def canonical(config: Mapping[str, Any]) -> str:
    """The enrich keys of ``config`` as stable text (part of the spec, so of its identity)."""
    mine = {k: v for k, v in config.items() if k.startswith(PREFIX)}
    return orjson.dumps(mine, option=orjson.OPT_SORT_KEYS).decode()


class Cache:
    """Looked-up rows (or None for "no row") by key, for ``ttl_ms``, at most ``max_entries``
    (least recently used evicted first). ``clock`` returns seconds."""

    def __init__(
        self, ttl_ms: int, max_entries: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl_ms / 1000
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Key, tuple[float, Row | None]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Key) -> tuple[bool, Row | None]:
        """(found, row): found is False when absent or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        if entry[0] <= self._clock():
            del self._entries[key]
            return False, None
        self._entries.move_to_end(key)
        return True, entry[1]

    def put(self, key: Key, row: Row | None) -> None:
        if self.ttl <= 0:
            return
        self._entries[key] = (self._clock() + self.ttl, row)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


def key_text(v: Any) -> str | None:
    """A record field as the text cast to the key column's type (None: cannot match)."""
    if v is None:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return v
    if isinstance(v, int | float):
        return str(v)
    return orjson.dumps(v).decode()


class Lookup:
    """The connection to the lookup table. Owned by one pipeline thread."""

    def __init__(self, cfg: EnrichConfig) -> None:
        self.cfg = cfg
        self._conn: psycopg.Connection[Any] | None = None
        self._query: sql.Composed | None = None

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _open(self) -> psycopg.Connection[Any]:
        cfg = self.cfg
        conn = psycopg.connect(cfg.conninfo(), autocommit=True)
        types: dict[str, str] = dict(
            conn.execute(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
                "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
                (sql.Identifier(cfg.schema, cfg.table).as_string(conn),),
            ).fetchall()
        )
        if not types:
            conn.close()
            raise TerminalError(f"enrich table {cfg.table_name} does not exist (or has no columns)")
        wanted = [c for _, c in cfg.key_mapping] + [c for c, _ in cfg.fields]
        unknown = [c for c in wanted if c not in types]
        if unknown:
            conn.close()
            raise TerminalError(
                f"enrich table {cfg.table_name} has no column(s) {', '.join(unknown)} "
                f"(it has: {', '.join(sorted(types))})"
            )
        n = len(cfg.key_mapping)
        # Keys travel as text and are cast to the columns' types, so any key type works;
        # the ordinality maps each row back to the key asked for.
        self._query = sql.SQL(
            "SELECT q.n, {fields} FROM unnest({arrays}) WITH ORDINALITY AS q({qcols}, n) "
            "JOIN {table} t ON {join}"
        ).format(
            fields=sql.SQL(", ").join(
                [sql.SQL("t.{}").format(sql.Identifier(c)) for c, _ in cfg.fields]
            ),
            arrays=sql.SQL(", ").join([sql.SQL("%s::text[]")] * n),
            qcols=sql.SQL(", ").join(sql.Identifier(f"k{i}") for i in range(n)),
            table=sql.Identifier(cfg.schema, cfg.table),
            join=sql.SQL(" AND ").join(
                [
                    sql.SQL("t.{col} = q.{k}::{type}").format(
                        col=sql.Identifier(col), k=sql.Identifier(f"k{i}"), type=sql.SQL(types[col])
                    )
                    for i, (_, col) in enumerate(cfg.key_mapping)
                ]
            ),
        )
        return conn

    def fetch(self, keys: list[Key]) -> dict[Key, Row]:
        """The row found for each key (absent: no row). Raises TerminalError when the table
        cannot be queried after a few attempts."""
        error: Exception | None = None
        for attempt in range(3):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._open()
                try:
                    return self._fetch(self._conn, keys)
                except psycopg.errors.DataError:
                    # A key that is not valid for its column (e.g. "x" for an integer): ask
                    # one key at a time so only such keys miss.
                    return self._one_by_one(self._conn, keys)
            except psycopg.OperationalError as exc:
                error = exc
                self.close()
                time.sleep(0.5 * 2**attempt)
            except psycopg.Error as exc:  # e.g. permission denied, table dropped meanwhile
                self.close()
                raise TerminalError(
                    f"enrich lookup in {self.cfg.table_name} failed: {str(exc).strip()}"
                ) from None
        raise TerminalError(
            f"enrich lookup in {self.cfg.table_name} on {self.cfg.hostname}:{self.cfg.port}/"
            f"{self.cfg.database} failed: {str(error).strip()}"
        )

    def _fetch(self, conn: psycopg.Connection[Any], keys: list[Key]) -> dict[Key, Row]:
        assert self._query is not None
        columns = [list(k[i] for k in keys) for i in range(len(self.cfg.key_mapping))]
        out: dict[Key, Row] = {}
        names = [name for _, name in self.cfg.fields]
        for n, *values in conn.execute(self._query, columns):
            key = keys[n - 1]
            if key not in out:  # several rows for one key: the first one wins
                out[key] = {
                    name: v if type(v) in (str, int, float, bool) or v is None else json_value(v)
                    for name, v in zip(names, values, strict=True)
                }
        return out

    def _one_by_one(self, conn: psycopg.Connection[Any], keys: list[Key]) -> dict[Key, Row]:
        out: dict[Key, Row] = {}
        for key in keys:
            try:
                out.update(self._fetch(conn, [key]))
            except psycopg.errors.DataError:
                continue
        return out


class EnrichRunner:
    """A :class:`~.runtime.Runner` for one enrich transform (one pipeline thread)."""

    def __init__(self, cfg: EnrichConfig, lookup: Lookup | None = None) -> None:
        self.cfg = cfg
        self.cache = Cache(cfg.ttl_ms, cfg.max_entries)
        self.lookup = lookup or Lookup(cfg)
        self.queries = 0  # lookups sent to the table (for tests and metrics)

    def close(self) -> None:
        self.lookup.close()

    def run(self, inputs: list[Input]) -> list[Result]:
        cfg = self.cfg
        keys: list[Key | None] = []
        for item in inputs:
            parts = [key_text(item.value.get(field)) for field, _ in cfg.key_mapping]
            keys.append(tuple(p for p in parts if p is not None) if None not in parts else None)
        found: dict[Key, Row | None] = {}
        wanted: list[Key] = []
        for key in keys:
            if key is None or key in found:
                continue
            hit, row = self.cache.get(key)
            if hit:
                found[key] = row
            else:
                found[key] = None
                wanted.append(key)
        if wanted:
            self.queries += 1
            rows = self.lookup.fetch(wanted)
            for key in wanted:
                row = rows.get(key)
                found[key] = row
                self.cache.put(key, row)
        return [
            self._apply(item, found.get(key) if key else None, key)
            for item, key in zip(inputs, keys, strict=True)
        ]

    def _apply(self, item: Input, row: Row | None, key: Key | None) -> Result:
        cfg = self.cfg
        if row is not None:
            return Output({**item.value, **row})
        if cfg.on_miss == "keep":
            return Output(item.value)
        if cfg.on_miss == "drop":
            return Output(None)
        if cfg.on_miss == "fail":
            asked = ", ".join(f"{f}={item.value.get(f)!r}" for f, _ in cfg.key_mapping)
            return Failure(f"enrich: no row in {cfg.table_name} for {asked}")
        return Output({**item.value, **{name: None for _, name in cfg.fields}})
