"""Extra destination connections that load parts of one snapshot chunk at the same time.

A Postgres backend parses a COPY and maintains the table's indexes on one core; one chunk
split by line into parts, each COPYed by its own backend, loads on as many cores. Used by
:class:`.bulk.ChunkLoader` for keyed tables only (upsert mode), where a part that lands twice
has no visible effect (invariant 2).

Contract of :meth:`Writers.run`: each part runs on its own connection in its own transaction,
committed as soon as it is loaded; the caller's own part runs meanwhile on the caller's thread,
in the caller's transaction. ``run`` returns once every helper part is committed, so the chunk
is durable when the caller's transaction commits (invariant 1: the runtime checkpoints only
after ``write`` returns); it raises the first error of any part, after all have finished. A
failure can thus leave some parts written and not checkpointed, as a crash can: the runtime
writes the chunk again and those rows upsert (invariant 2). Committing each part on its own,
rather than all once every part has loaded, means no part ever waits for another's
transaction (a unique constraint of the destination's own could otherwise make the caller's
part wait on a helper that waits for the caller).

One thread (the pipeline runner's) calls ``run`` and ``close``; each helper thread only ever
touches its own connection, one part at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import psycopg

Conn = psycopg.Connection[tuple[object, ...]]
Part = Callable[[Conn, bytes], None]


class Writers:
    """``size`` helper connections (opened on first use by ``connect``)."""

    def __init__(
        self,
        connect: Callable[[], Conn],
        size: int,
        on_begin: Callable[[Conn], None] | None = None,
    ) -> None:
        self._connect = connect
        self._on_begin = on_begin
        self.size = size
        self._conns: list[Conn | None] = [None] * size
        self._pool: ThreadPoolExecutor | None = None

    def run(self, load: Part, parts: Sequence[bytes], own: Callable[[], None]) -> None:
        """``load(conn, part)`` for each of ``parts`` on a helper, ``own()`` here; see above."""
        assert len(parts) <= self.size
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.size, thread_name_prefix="tideflow-copy")
        started = [self._pool.submit(self._load, i, load, part) for i, part in enumerate(parts)]
        error: BaseException | None = None
        try:
            own()
        except BaseException as exc:
            error = exc
        for future in started:
            failed = future.exception()  # waits: no part outlives the call
            if failed is not None and error is None:
                error = failed
        if error is not None:
            raise error

    def _load(self, i: int, load: Part, part: bytes) -> None:
        conn = self._conns[i]
        if conn is None or conn.closed:
            conn = self._conns[i] = self._connect()
        try:
            with conn.transaction():
                if self._on_begin is not None:
                    self._on_begin(conn)
                load(conn, part)
        except psycopg.OperationalError:
            self._drop(i)  # a broken connection: a new one on the next use
            raise

    def _drop(self, i: int) -> None:
        conn, self._conns[i] = self._conns[i], None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for i in range(self.size):
            self._drop(i)
