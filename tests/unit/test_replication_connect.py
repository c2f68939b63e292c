"""Opening a replication connection must not freeze the other threads of the worker.

A server that accepts TCP but never answers the startup packet is what a hung host or a
half-open network path looks like. ``PGconn.connect`` held the GIL through the whole wait;
the polled handshake waits in ``select``, so another thread keeps running, and the attempt
ends after ``connect_timeout`` with a retryable error.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tideflow.connectors.sources.postgres.replication import ReplicationStream
from tideflow.errors import TideflowError, TransientError


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback listener that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    server.close()


def test_connect_to_a_silent_server_times_out_without_freezing_other_threads(
    silent_server: int,
) -> None:
    conninfo = (
        f"host=127.0.0.1 port={silent_server} user=u dbname=d replication=database "
        "sslmode=disable gssencmode=disable"
    )
    stream = ReplicationStream(
        conninfo, lambda message, _: TransientError(message), connect_timeout=2.0
    )
    ticks = 0
    done = threading.Event()

    def tick() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0.01)

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    started = time.monotonic()
    with pytest.raises(TideflowError) as caught:
        stream.start("slot", 0, [], confirmed=0)
    waited = time.monotonic() - started
    done.set()
    ticker.join()
    assert isinstance(caught.value, TransientError)
    assert "timeout expired" in str(caught.value)
    assert waited >= 2.0  # the whole timeout was waited, not a refused connection
    # ~200 ticks when the GIL is free; a handshake holding it leaves a handful at most.
    assert ticks >= 40, f"other threads ran only {ticks} times during a {waited:.1f} s connect"
