"""Stores a pipeline's checkpoints off the write path.

The pipeline runner submits the position of each batch once the destination has made it
durable and goes on writing the next batch; this thread stores the newest submitted position
(older pending ones are superseded: positions only move forward) and only then publishes it as
durable (invariant 1: the source acknowledges only checkpointed positions). A crash between a
write and its checkpoint replays that batch: duplicates, never gaps (invariant 2).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from tideflow.engine.checkpoints import Checkpoints
from tideflow.engine.positions import Position
from tideflow.engine.retry import Backoff, wait
from tideflow.errors import TerminalError


class Checkpointer:
    def __init__(
        self,
        checkpoints: Checkpoints,
        unit: str,
        publish: Callable[[Position], None],
        on_retry: Callable[[float, Exception], None],
        abort: threading.Event,
        backoff: Backoff,
    ) -> None:
        self.checkpoints = checkpoints
        self.unit = unit
        self.publish = publish
        self.on_retry = on_retry
        self.abort = abort
        self.backoff = backoff
        self.failed: TerminalError | None = None
        self._cond = threading.Condition()
        self._pending: Position | None = None
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name=f"tideflow-checkpoint-{unit}", daemon=True
        )
        self._thread.start()

    def submit(self, position: Position) -> None:
        with self._cond:
            self._pending = position
            self._cond.notify_all()

    def flush(self) -> bool:
        """Wait until every submitted position is stored; False if aborted or failed."""
        with self._cond:
            while (self._pending is not None or self._busy) and self.failed is None:
                if self.abort.is_set():
                    return False
                self._cond.wait(0.1)
            return self.failed is None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(5)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait(0.5)
                if self._pending is None:
                    return
                position, self._pending = self._pending, None
                self._busy = True
            try:
                stored = self._save(position)
                if stored is not None:
                    self.publish(stored)
            except TerminalError as exc:
                self.failed = exc
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
            if self.failed is not None:
                return

    def _save(self, position: Position) -> Position | None:
        self.backoff.reset()
        while True:
            try:
                _, stored = self.checkpoints.save(self.unit, position)
                return stored
            except TerminalError:
                raise
            except Exception as exc:  # the metadata store is unreachable: keep trying
                delay = self.backoff.next_delay()
                self.on_retry(delay, exc)
                if wait(self.abort, delay):
                    return None
