"""The streaming replication protocol of a logical slot, over psycopg's low-level libpq API.

psycopg has no replication API, but a ``replication=database`` connection opened with
``psycopg.pq.PGconn`` accepts ``START_REPLICATION ... LOGICAL`` through the simple query
protocol and then streams CopyBoth data. Each CopyData message from the server is either

- ``w`` XLogData: ``Int64 start LSN, Int64 server WAL end, Int64 send time`` then the output
  plugin's message (pgoutput), or
- ``k`` primary keepalive: ``Int64 server WAL end, Int64 send time, Byte1 reply requested``,

and the client answers with ``r`` standby status updates: ``Int64 write, Int64 flush,
Int64 apply, Int64 client time, Byte1 reply requested``. For a logical slot the server moves
``confirmed_flush_lsn`` to the *flush* LSN we report, so we report only what the runtime
acknowledged (invariant 1), and never less than before (invariant 2).
"""

from __future__ import annotations

import contextlib
import select
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final

from psycopg import pq

from tideflow.connectors.sources.postgres.position import format_lsn
from tideflow.errors import TideflowError, TransientError

XLOG_HEADER: Final = 25  # 'w' + start LSN + WAL end + send time
XLOG_START = struct.Struct(">Q").unpack_from  # at offset 1 of a 'w' message
KEEPALIVE = struct.Struct(">QqB").unpack_from  # at offset 1 of a 'k' message
_STATUS = struct.Struct(">cQQQqB").pack
_PG_EPOCH_US = 946_684_800_000_000
_TICK_EVERY = 256  # messages between clock checks while data keeps flowing
_W, _K = 119, 107

#: (libpq error message, SQLSTATE or None) → the error to raise
ErrorClassifier = Callable[[str, str | None], TideflowError]


def pg_now_us() -> int:
    """Microseconds since 2000-01-01 UTC, the protocol's clock."""
    return time.time_ns() // 1000 - _PG_EPOCH_US


class ReplicationStream:
    """Streams one logical slot for one reader thread.

    ``read`` returns raw CopyData messages (``w`` and ``k``); keepalives that ask for a reply
    are answered inside ``read``. ``confirm`` records the acknowledged flush LSN, reported in
    the next status update: at once when the last update is over ``prompt`` seconds old,
    otherwise from a later ``read`` within ``prompt`` seconds, and every ``status_interval``
    regardless. When ``read`` finds the server quiet, status updates ask it to answer; no
    answer within ``server_timeout`` seconds is a :class:`TransientError`.

    The reader calls ``read`` and ``confirm`` holding :attr:`lock`. A background thread takes
    the lock only when it is free, to send the periodic status update while the reader is held
    back (back-pressure), so the server does not drop a slow consumer after
    ``wal_sender_timeout``. ``close`` stops that thread.
    """

    def __init__(
        self,
        conninfo: str,
        classify: ErrorClassifier,
        *,
        status_interval: float = 10.0,
        prompt: float = 1.0,
        server_timeout: float = 120.0,
        connect_timeout: float = 10.0,
    ) -> None:
        self._conninfo = conninfo
        self._connect_timeout = connect_timeout
        self._classify = classify
        self._status_interval = status_interval
        self._prompt = prompt
        self._server_timeout = server_timeout
        self._conn: pq.abc.PGconn | None = None
        self.flushed = 0  # the flush LSN we report: only ever acknowledged positions
        self.server_wal_end = 0
        self._reported = -1
        self._last_status = 0.0
        self._awaiting_reply = 0.0  # when we first asked a quiet server to answer, or 0
        self._countdown = _TICK_EVERY
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._status_thread: threading.Thread | None = None

    def start(
        self, slot: str, start_lsn: int, options: Sequence[tuple[str, str]], *, confirmed: int
    ) -> None:
        """Connect and ``START_REPLICATION`` at ``start_lsn``.

        Status updates report ``confirmed`` (the slot's ``confirmed_flush_lsn``) until
        ``confirm`` moves past it, never ``start_lsn`` itself: after a reopen that is the
        checkpoint of the running pipelines only, and a paused one may need older changes
        (invariant 1).
        """
        conn = self._connect()
        self._conn = conn
        opts = ", ".join(f"{k} '{v.replace(chr(39), chr(39) * 2)}'" for k, v in options)
        command = f"START_REPLICATION SLOT {slot} LOGICAL {format_lsn(start_lsn)} ({opts})"
        conn.send_query(command.encode())
        self._await_result(conn, time.monotonic() + self._server_timeout)
        result = conn.get_result()
        if result is None or result.status != pq.ExecStatus.COPY_BOTH:
            raise self._result_error(result)
        self.flushed = max(self.flushed, confirmed)
        self._last_status = time.monotonic()
        self._status_thread = threading.Thread(
            target=self._send_status_while_idle, name=f"pg-status-{slot}", daemon=True
        )
        self._status_thread.start()

    def _connect(self) -> pq.abc.PGconn:
        """Open the connection with libpq's non-blocking handshake.

        ``PGconn.connect`` holds the GIL for the whole handshake: a slow or unreachable host
        froze every thread of the worker (a 3 s connect left other pipelines 2 ticks), so
        waiting happens here in ``select``, which releases it. libpq leaves the timeout of a
        polled connect to the caller: ``connect_timeout`` seconds overall.
        """
        conn = pq.PGconn.connect_start(self._conninfo.encode())
        deadline = time.monotonic() + self._connect_timeout
        poll = pq.PollingStatus.WRITING  # libpq: start as if the last poll said WRITING
        while conn.status != pq.ConnStatus.BAD and poll != pq.PollingStatus.FAILED:
            if poll == pq.PollingStatus.OK:
                return conn
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                conn.finish()
                raise self._classify(
                    f"timeout expired: no connection within {self._connect_timeout:g} s", None
                )
            fd = conn.socket  # may change between polls (several hosts, SSL fallback)
            if poll == pq.PollingStatus.READING:
                select.select([fd], [], [], remaining)
            else:
                select.select([], [fd], [], remaining)
            poll = pq.PollingStatus(conn.connect_poll())
        message = conn.get_error_message()
        conn.finish()
        raise self._classify(message, None)

    def _await_result(self, conn: pq.abc.PGconn, deadline: float) -> None:
        """Wait for a command's answer in ``select`` (GIL released), not in ``get_result``."""
        self._consume(conn)
        while conn.is_busy():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransientError(
                    f"Postgres did not answer START_REPLICATION within {self._server_timeout:g} s"
                )
            select.select([conn.socket], [], [], remaining)
            self._consume(conn)

    def read(self, timeout: float) -> bytes | None:
        """The next CopyData message, or ``None`` when none arrives within ``timeout`` s."""
        conn = self._conn
        if conn is None:
            raise TransientError("replication stream is closed")
        n, data = conn.get_copy_data(1)
        if n > 0:
            self._countdown -= 1
            if self._countdown <= 0:
                self._tick(time.monotonic())
            return self._keepalive(data) if data[0] == _K else bytes(data)
        deadline = time.monotonic() + timeout
        while True:
            if n == 0:
                self._consume(conn)
                n, data = conn.get_copy_data(1)
            if n > 0:
                self._countdown -= 1
                return self._keepalive(data) if data[0] == _K else bytes(data)
            if n < 0:
                raise self._end_of_stream(conn, n)
            now = time.monotonic()
            wait = self._tick(now)
            remaining = deadline - now
            if remaining <= 0:
                return None
            try:
                select.select([conn.socket], [], [], min(remaining, wait))
            except (OSError, ValueError) as exc:
                raise TransientError(f"replication connection lost: {exc}") from exc
            n = 0

    def read_batch(self, limit: int, timeout: float) -> list[bytes]:
        """Up to ``limit`` messages: waits up to ``timeout`` s for the first, then takes only
        what has already arrived. Cheaper per message than ``read`` on a busy stream."""
        first = self.read(timeout)
        if first is None:
            return []
        conn = self._conn
        assert conn is not None  # read() succeeded
        batch = [first]
        get, append = conn.get_copy_data, batch.append
        while len(batch) < limit:
            n, data = get(1)
            if n <= 0:
                if n < 0:
                    break  # the next read reports how the stream ended
                self._consume(conn)
                n, data = get(1)
                if n <= 0:
                    break
            append(self._keepalive(data) if data[0] == _K else bytes(data))
        self._countdown -= len(batch) - 1
        if self._countdown <= 0:
            self._tick(time.monotonic())
        return batch

    def confirm(self, lsn: int) -> None:
        """Report ``lsn`` as flushed; earlier LSNs than already reported are ignored."""
        if lsn <= self.flushed:
            return
        self.flushed = lsn
        if time.monotonic() - self._last_status >= self._prompt:
            self._send_status(reply=False)

    def close(self) -> None:
        """Report the last acknowledged LSN, then drop the connection. Never raises."""
        self._stop.set()
        with self.lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                # Best effort on the way out: close never raises.
                with contextlib.suppress(Exception):
                    if self.flushed != self._reported and conn.status == pq.ConnStatus.OK:
                        self._put_status(conn, reply=False)
                conn.finish()
        thread, self._status_thread = self._status_thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _send_status_while_idle(self) -> None:
        """Background duty: a status update when the reader has not sent one for a while."""
        while not self._stop.wait(self._status_interval / 2):
            if not self.lock.acquire(blocking=False):
                continue  # the reader is active and sends its own updates
            try:
                conn = self._conn
                if conn is None:
                    return
                if time.monotonic() - self._last_status >= self._status_interval:
                    self._put_status(conn, reply=False)
            except TideflowError:
                pass  # the reader meets the same failure on its next read and reports it
            finally:
                self.lock.release()

    def _keepalive(self, data: memoryview) -> bytes:
        wal_end, _send_time, reply = KEEPALIVE(data, 1)
        if wal_end > self.server_wal_end:
            self.server_wal_end = wal_end
        if reply:
            self._send_status(reply=False)
        return bytes(data)

    def _tick(self, now: float) -> float:
        """Send due status updates and check liveness; return seconds until the next duty."""
        quiet = self._countdown >= _TICK_EVERY  # nothing received since the last tick
        self._countdown = _TICK_EVERY
        if not quiet:
            self._awaiting_reply = 0.0
        elif self._awaiting_reply and now - self._awaiting_reply > self._server_timeout:
            raise TransientError(
                f"Postgres did not answer on the replication connection for "
                f"{self._server_timeout:.0f} s"
            )
        pending = self.flushed != self._reported
        due = self._last_status + (self._prompt if pending else self._status_interval)
        if now >= due:
            # A quiet server is asked to answer, which proves it is still there.
            self._send_status(reply=quiet)
            if quiet and not self._awaiting_reply:
                self._awaiting_reply = now
            due = now + self._status_interval
        return max(0.0, due - now)

    def _send_status(self, *, reply: bool) -> None:
        conn = self._conn
        if conn is None:
            return
        self._put_status(conn, reply=reply)

    def _put_status(self, conn: pq.abc.PGconn, *, reply: bool) -> None:
        lsn = self.flushed
        # invariant 1: write = flush = apply = the acknowledged LSN, so neither the slot nor a
        # synchronous-replication setup naming this slot can count data not yet durable.
        message = _STATUS(b"r", lsn, lsn, lsn, pg_now_us(), 1 if reply else 0)
        if conn.put_copy_data(message) != 1 or conn.flush() != 0:
            raise self._classify(conn.get_error_message(), None)
        self._reported = lsn
        self._last_status = time.monotonic()

    def _consume(self, conn: pq.abc.PGconn) -> None:
        try:
            conn.consume_input()
        except Exception as exc:
            raise self._classify(conn.get_error_message() or str(exc), None) from exc

    def _end_of_stream(self, conn: pq.abc.PGconn, n: int) -> TideflowError:
        """The server ended the stream (-1) or the connection failed (-2)."""
        result = conn.get_result() if n == -1 else None
        if result is not None and result.status == pq.ExecStatus.FATAL_ERROR:
            return self._result_error(result)
        message = conn.get_error_message() or "the server ended the replication stream"
        return self._classify(message, None)

    def _result_error(self, result: pq.abc.PGresult | None) -> TideflowError:
        conn = self._conn
        if result is None:
            return self._classify(conn.get_error_message() if conn else "no result", None)
        state = result.error_field(pq.DiagnosticField.SQLSTATE)
        message = result.get_error_message() or f"unexpected result status {result.status}"
        return self._classify(message, state.decode() if state else None)
