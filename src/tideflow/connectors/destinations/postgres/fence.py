"""Storage-side fencing of one unit's writes (cluster mode, ``docs/cluster.md``).

Write-side fencing in the runtime stops a worker from *starting* a write once its lease may
have expired, but a write already in progress when the worker froze could commit after the
new owner had written newer changes (a deleted row coming back). So the generation of the
lease is also checked where the data lands, in the same transaction, with a fencing token:

- the table ``<schema>.tideflow_fences`` holds, per unit, the newest generation that wrote;
- every write transaction of a fenced destination starts with ``SELECT … FOR SHARE`` of its
  unit's row and goes on only if the generation is its own (:meth:`UnitFence.check`); the
  shared row lock is held until commit;
- a new owner :meth:`claims <UnitFence.claim>` the row before its first write, raising the
  generation. The update waits for every transaction of an earlier owner still holding the
  row; those of a frozen earlier owner are ended with ``pg_terminate_backend`` (its
  connections carry the unit in ``application_name``), so a takeover never waits on a
  frozen process. Any later transaction of the earlier owner finds a newer generation and
  raises :class:`~tideflow.engine.errors.Fenced` with nothing written.

So the writes of one unit are ordered by generation at the destination, whatever the clocks
(invariant 2: an older owner's batch can never land after a newer owner's).
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Final

import psycopg
from psycopg import errors, sql

from tideflow.engine.errors import Fenced
from tideflow.errors import TransientError

log = logging.getLogger(__name__)

TABLE: Final = "tideflow_fences"
_CLAIM_WAIT: Final = sql.Literal("2s")  # lock wait before ending an earlier owner's transactions
_CLAIM_ATTEMPTS: Final = 10

Conn = psycopg.Connection[tuple[object, ...]]


def application_name(unit: str) -> str:
    """The ``application_name`` of every connection writing ``unit``: a digest, because
    Postgres keeps 63 bytes and checkpoint units (``pipeline:<uuid>/log#k/N``) can be longer;
    two units must never share it (a claim ends the other sessions of its name)."""
    return "tideflow:fence:" + hashlib.sha256(unit.encode()).hexdigest()[:24]


class UnitFence:
    def __init__(self, schema: str, unit: str, generation: int) -> None:
        self.unit = unit
        self.generation = generation
        self._schema = sql.Identifier(schema)
        self._table = sql.Identifier(schema, TABLE)

    def claim(self, conn: Conn) -> None:
        """Make this generation the unit's current one (autocommit ``conn``); see the module."""
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(self._schema))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (unit text PRIMARY KEY, generation bigint NOT NULL)"
            ).format(self._table)
        )
        for _ in range(_CLAIM_ATTEMPTS):
            self._refuse_if_newer(conn)
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(_CLAIM_WAIT))
                    row = conn.execute(
                        sql.SQL(
                            "INSERT INTO {t} AS f (unit, generation) VALUES (%s, %s) "
                            "ON CONFLICT (unit) DO UPDATE SET generation = EXCLUDED.generation "
                            "WHERE f.generation <= EXCLUDED.generation RETURNING f.generation"
                        ).format(t=self._table),
                        (self.unit, self.generation),
                    ).fetchone()
            except errors.LockNotAvailable:
                self._end_earlier_writers(conn)
                continue
            if row is None:
                self._refuse_if_newer(conn)
            return
        raise TransientError(
            f"could not take the write fence of {self.unit} at the destination: its row stays "
            "locked by another session"
        )

    def check(self, conn: Conn) -> None:
        """First statement of every write transaction: go on only as the current generation."""
        row = conn.execute(
            sql.SQL("SELECT generation FROM {} WHERE unit = %s FOR SHARE").format(self._table),
            (self.unit,),
        ).fetchone()
        current = row[0] if row else None
        if current != self.generation:
            raise Fenced(
                f"{self.unit}: generation {current} has written to the destination since this "
                f"writer (generation {self.generation}) took its lease; not writing (if the "
                f"metadata store was reset, delete the row of this unit from {TABLE})"
            )

    def _refuse_if_newer(self, conn: Conn) -> None:
        row = conn.execute(
            sql.SQL("SELECT generation FROM {} WHERE unit = %s").format(self._table),
            (self.unit,),
        ).fetchone()
        if row is not None and isinstance(row[0], int) and row[0] > self.generation:
            raise Fenced(
                f"{self.unit}: generation {row[0]} owns the destination writes; this writer "
                f"has generation {self.generation}"
            )

    def _end_earlier_writers(self, conn: Conn) -> None:
        """The lease is ours, so another session writing this unit belongs to an earlier owner
        (frozen, or about to find out): end it rather than wait for it."""
        ended = conn.execute(
            "SELECT pid, pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid() AND datname = "
            "current_database()",
            (application_name(self.unit),),
        ).fetchall()
        if ended:
            log.warning(
                "%s: ended %d destination session(s) of an earlier owner holding its write "
                "fence: %s",
                self.unit,
                len(ended),
                ", ".join(str(pid) for pid, _ in ended),
            )
        time.sleep(0.1)  # let the server finish the terminated transactions
