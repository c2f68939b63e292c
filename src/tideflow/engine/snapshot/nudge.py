"""In-process wake-ups of snapshot coordinators.

A coordinator reads snapshot requests and cancellations from the metadata store once a
second (the only channel between processes in cluster mode). When the API that wrote them
runs in the same process as the worker (the embedded default), :func:`nudge` tells the
source's coordinator at once, so a snapshot starts, or a cancellation takes effect, within
milliseconds instead of up to a second. A nudge is only a hint: a coordinator that misses one
(not started yet, another process) still finds the rows at its next poll.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

_lock = threading.Lock()
_listeners: dict[str, list[Callable[[], None]]] = {}


def listen(source_id: str, wake: Callable[[], None]) -> Callable[[], None]:
    """Call ``wake`` on every nudge of ``source_id``; returns the function that stops it."""
    with _lock:
        _listeners.setdefault(source_id, []).append(wake)

    def stop() -> None:
        with _lock:
            found = _listeners.get(source_id, [])
            if wake in found:
                found.remove(wake)
            if not found:
                _listeners.pop(source_id, None)

    return stop


def nudge(source_id: str) -> None:
    """Wake the coordinators of ``source_id`` in this process (call after the commit)."""
    with _lock:
        wakes = list(_listeners.get(source_id, ()))
    for wake in wakes:
        wake()
