"""The ``postgresql`` destination: batches applied with COPY and set-based statements.

Each batch is one destination transaction (all or nothing), so a replayed batch converges to
the same table (invariant 2). Per batch and table: reduce the events per key
(:mod:`tideflow.engine.reduce`), COPY the rows into a session staging table, then apply them
with one statement per kind of change (see :mod:`.writer`). Tables and new columns are created
before the data transaction (see :mod:`.tables`).

A batch holding a snapshot chunk (``Batch.chunk``, COPY text from a Postgres source) is loaded
with one COPY by :mod:`.bulk` when its lines fit the destination table as they are; otherwise,
or when the COPY fails on data, the chunk is written as its ``op=r`` events like any batch.

A batch failing on data (a value out of range, a constraint) is retried row group by row group
inside savepoints (bisection) to find the offending keys; they are raised as
:class:`~tideflow.engine.errors.PoisonRecord` with nothing of the batch committed, and the
runtime decides whether to halt or dead-letter them (:meth:`write_dead_letters`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import psycopg

from tideflow.connectors.base import Destination, Problem
from tideflow.connectors.destinations.postgres import dead_letters
from tideflow.connectors.destinations.postgres.bulk import ChunkLoader
from tideflow.connectors.destinations.postgres.config import PostgresDestinationConfig
from tideflow.connectors.destinations.postgres.fence import UnitFence, application_name
from tideflow.connectors.destinations.postgres.staging import Stager
from tideflow.connectors.destinations.postgres.tables import Catalog, DestTable
from tideflow.connectors.destinations.postgres.writer import Writer
from tideflow.engine.errors import DeadLetter, PoisonRecord
from tideflow.engine.reduce import Change, TableChanges, reduce
from tideflow.envelope import SourceInfo
from tideflow.errors import TerminalError, TideflowError, TransientError
from tideflow.events import Batch, ChangeEvent, Op, SnapshotChunk, TableSchema

log = logging.getLogger(__name__)

# SQLSTATEs retrying cannot fix: authentication, missing database/schema, privileges, a
# destination table without the key an upsert needs.
_TERMINAL = {"28000", "28P01", "3D000", "3F000", "42501", "42P10"}
# The destination changed under us (table or column dropped): refresh the catalogue and retry.
_STALE = {"42P01", "42703"}

Item = Change | ChangeEvent
Plan = list[tuple[TableChanges, DestTable]]


class PostgresDestination(Destination[PostgresDestinationConfig]):
    connector = "postgresql"
    #: the runtime hands snapshot chunks over as they are (see :meth:`write`)
    takes_chunks = True
    #: binary COPY chunks load as they are too (ADR 0005, :mod:`.bulk`); a chunk that cannot
    #: (another column type here, a metadata default changed) goes row by row
    takes_binary_chunks = True

    def __init__(self, config: PostgresDestinationConfig, *, name: str) -> None:
        super().__init__(config, name=name)
        self.source_info = SourceInfo(connector="unknown", name=name)
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._catalog: Catalog | None = None
        self._stager: Stager | None = None
        self._writer: Writer | None = None
        self._loader: ChunkLoader | None = None
        self._fence: UnitFence | None = None

    def fence(self, unit: str, generation: int) -> None:
        """Storage-side fencing (see :mod:`.fence`): every write transaction checks the
        generation in the destination itself."""
        self._fence = UnitFence(self.config.schema_name, unit, generation)

    def bind_source(self, info: SourceInfo) -> None:
        """Which source the events come from (recorded with dead letters)."""
        self.source_info = info

    def _where(self) -> str:
        c = self.config
        return f"destination Postgres {c.hostname}:{c.port}/{c.database}"

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        c = self.config
        try:
            return psycopg.connect(
                host=c.hostname,
                port=c.port,
                dbname=c.database,
                user=c.username,
                password=c.password,
                sslmode=c.sslmode,
                autocommit=True,
                connect_timeout=10,
                application_name=(
                    application_name(self._fence.unit)
                    if self._fence
                    else f"tideflow:{self.name}"[:63]
                ),
            )
        except psycopg.Error as exc:
            raise self._classify(exc) from exc

    def preflight(self) -> list[Problem]:
        try:
            conn = self._connect()
        except TideflowError as exc:
            return [Problem("connect", exc.message)]
        with conn:
            row = conn.execute(
                "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s) "
                "THEN has_schema_privilege(%s, 'CREATE') "
                "ELSE has_database_privilege(current_database(), 'CREATE') END",
                (self.config.schema_name, self.config.schema_name),
            ).fetchone()
        if not row or not row[0]:
            return [
                Problem(
                    "privileges",
                    f"user {self.config.username} cannot create tables in schema "
                    f"{self.config.schema_name} of {self.config.database}; grant CREATE on it",
                )
            ]
        return []

    def open(self) -> None:
        self._conn = self._connect()
        if self._fence is not None:
            try:
                self._fence.claim(self._conn)
            except psycopg.Error as exc:
                raise self._classify(exc) from exc
        self._catalog = Catalog(self._conn, self.config)
        self._stager = Stager(self._conn)
        self._writer = Writer(self._conn, self.config, self._stager)
        self._loader = ChunkLoader(
            self._conn,
            self.config,
            self._connect,
            writers=self.config.snapshot_load_connections,
            on_begin=self._check_fence,
        )

    def _check_fence(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        """First statement of every write transaction (no-op unless fenced)."""
        if self._fence is not None:
            self._fence.check(conn)

    def close(self) -> None:
        loader, self._loader = self._loader, None
        if loader is not None:
            loader.close()
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                log.debug("closing the destination connection failed", exc_info=True)

    def _reduce_key(self, table: TableSchema) -> tuple[str, ...]:
        assert self._catalog is not None
        if self.config.insert_mode == "insert":
            return ()
        return self._catalog.key_of(table)

    def write(self, batch: Batch) -> None:
        if batch.chunk is not None:
            if self._write_chunk(batch.chunk):
                return
            batch = Batch(batch.chunk.events(), batch.position, batch.last_commit_ts_ms)
        if not batch.events:
            return
        if self._conn is None or self._catalog is None or self._stager is None:
            raise TransientError(f"{self._where()}: not connected")
        events = batch.events
        if not self.config.delete_enabled:
            # Dropped before reduction: a create then delete of a key must leave the create.
            events = [e for e in events if e.op is not Op.DELETE]
        try:
            plan = [(tc, self._catalog.ensure(tc.table)) for tc in reduce(events, self._reduce_key)]
            for _, dest in plan:
                self._stager.prepare(dest)
            try:
                self._apply(plan)
            except psycopg.Error as exc:
                if not _is_data_error(exc):
                    raise
                self._apply_isolating(plan)
        except psycopg.Error as exc:
            raise self._classify(exc) from exc

    def _write_chunk(self, chunk: SnapshotChunk) -> bool:
        """Load ``chunk`` with COPY; False when it must be written as events instead."""
        if self._conn is None or self._catalog is None or self._loader is None:
            raise TransientError(f"{self._where()}: not connected")
        try:
            dest = self._catalog.ensure(chunk.table)
            columns = self._loader.columns(chunk, dest)
            if columns is None:
                return False
            with self._conn.transaction():
                self._check_fence(self._conn)
                self._loader.load(chunk, dest, columns)
            return True
        except psycopg.Error as exc:
            if _is_data_error(exc):
                return False  # the per-row path finds the refused rows
            raise self._classify(exc) from exc

    def _apply(self, plan: Plan) -> None:
        assert self._conn is not None and self._stager is not None
        with self._conn.transaction():
            self._check_fence(self._conn)
            self._stager.begin()
            for tc, dest in plan:
                if tc.truncate is not None:
                    self._writer_().truncate(dest)
                self._apply_items(tc, dest, _items(tc))

    def _writer_(self) -> Writer:
        assert self._writer is not None
        return self._writer

    def _apply_items(self, tc: TableChanges, dest: DestTable, items: Sequence[Item]) -> None:
        if not items:
            return
        if tc.key:
            changes = [i for i in items if isinstance(i, Change)]
            self._writer_().changes(dest, tc.table, changes)
        else:
            events = [i for i in items if isinstance(i, ChangeEvent)]
            mirror = self.config.insert_mode == "upsert"
            self._writer_().log(dest, tc.table, events, mirror=mirror)

    def _apply_isolating(self, plan: Plan) -> None:
        """Slow path: find the items that fail on data; commit if none does."""
        assert self._conn is not None and self._stager is not None
        letters: list[DeadLetter] = []
        with self._conn.transaction():
            self._check_fence(self._conn)
            self._stager.begin()
            for tc, dest in plan:
                if tc.truncate is not None:
                    self._writer_().truncate(dest)
                self._bisect(tc, dest, _items(tc), letters)
            if letters:
                raise PoisonRecord(letters)  # rolls the whole batch back

    def _bisect(
        self, tc: TableChanges, dest: DestTable, items: Sequence[Item], letters: list[DeadLetter]
    ) -> None:
        assert self._conn is not None
        if not items:
            return
        try:
            with self._conn.transaction():  # a savepoint
                self._apply_items(tc, dest, items)
        except psycopg.Error as exc:
            if not _is_data_error(exc):
                raise
            if len(items) > 1:
                mid = len(items) // 2
                self._bisect(tc, dest, items[:mid], letters)
                self._bisect(tc, dest, items[mid:], letters)
                return
            item = items[0]
            error = _describe(exc, dest)
            events = item.events if isinstance(item, Change) else [item]
            letters.extend(DeadLetter(ev, error) for ev in events)

    def write_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Store refused events in ``<schema>.tideflow_dead_letters`` (idempotent)."""
        if self._conn is None:
            raise TransientError(f"{self._where()}: not connected")
        try:
            dead_letters.write(
                self._conn, self.config.schema_name, self.name, self.source_info, letters
            )
        except psycopg.Error as exc:
            raise self._classify(exc) from exc

    def _classify(self, exc: psycopg.Error) -> TideflowError:
        state = exc.sqlstate or ""
        message = f"{self._where()}: {str(exc).strip()}"
        if state in _STALE and self._catalog is not None:
            self._catalog.forget()
        if state in _TERMINAL or (not state and "password authentication" in str(exc)):
            if state == "42P10":
                message += (
                    " (the destination table has no primary key matching the source "
                    "key: add one, or use insert.mode=insert)"
                )
            return TerminalError(message, code="destination_refused")
        return TransientError(message)


def _is_data_error(exc: psycopg.Error) -> bool:
    """A value the destination refuses: server data/constraint errors, or a value the client
    cannot adapt (no SQLSTATE: it never reached the server)."""
    if isinstance(exc, psycopg.DataError | psycopg.IntegrityError):
        return True
    return isinstance(exc, psycopg.ProgrammingError) and exc.sqlstate is None


def _items(tc: TableChanges) -> list[Item]:
    return list(tc.changes.values()) if tc.key else list(tc.log)


def _describe(exc: psycopg.Error, dest: DestTable) -> str:
    diag = exc.diag
    parts = [str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__]
    if diag.column_name:
        parts.append(f"column {diag.column_name}")
    if diag.message_detail:
        parts.append(diag.message_detail)
    return f"{'; '.join(parts)} (writing {dest.schema}.{dest.name})"
