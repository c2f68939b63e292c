"""Unit statuses the runtime reports (rows of ``unit_status``).

Statuses are what the runtime observes, not what the user asked for: ``Starting`` (opening or
retrying an open), ``Active`` (moving data; ``message`` says when it is retrying a failure),
``Paused``, ``Stopped``, ``Broken`` (a terminal error; ``message`` says what to fix).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import delete, select

from tideflow.store.db import Store
from tideflow.store.models.runtime import UnitStatus

log = logging.getLogger(__name__)

STARTING = "Starting"
ACTIVE = "Active"
PAUSED = "Paused"
STOPPED = "Stopped"
BROKEN = "Broken"

MAX_MESSAGE = 2000


def source_unit(source_id: str) -> str:
    return f"source:{source_id}"


def pipeline_unit(pipeline_id: str) -> str:
    return f"pipeline:{pipeline_id}"


class StatusBoard:
    """Writes statuses through to the store, skipping writes that change nothing.

    Thread-safe; a failed write (metadata store down) is logged and retried on the next change
    or :meth:`flush`, never raised into the data path.
    """

    def __init__(self, store: Store, worker_id: str) -> None:
        self.store = store
        self.worker_id = worker_id
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._written: dict[str, tuple[str, str]] = {}
        self._wanted: dict[str, tuple[str, str]] = {}
        self._parts: dict[str, dict[str, tuple[str, str]]] = {}

    def report(self, unit: str, status: str, message: str = "", *, part: str | None = None) -> None:
        """Record what ``unit`` is doing now.

        A unit run in several parts (a pipeline fed by several sources) reports each part; the
        row shows the most severe part.
        """
        # One writer at a time: the supervisor and runners may report the same unit at once,
        # and the last report must be the row's final state.
        with self._write_lock:
            with self._lock:
                if part is not None:
                    parts = self._parts.setdefault(unit, {})
                    parts[part] = (status, message)
                    status, message = _most_severe(parts)
                message = message[:MAX_MESSAGE]
                self._wanted[unit] = (status, message)
                if self._written.get(unit) == (status, message):
                    return
            self._write(unit, status, message)

    def get(self, unit: str) -> tuple[str, str] | None:
        with self._lock:
            return self._wanted.get(unit)

    def flush(self) -> None:
        with self._lock:
            pending = [(u, w) for u, w in self._wanted.items() if self._written.get(u) != w]
        with self._write_lock:
            for unit, (status, message) in pending:
                self._write(unit, status, message)

    def forget(self, units: set[str]) -> None:
        """Remove the status rows of units that no longer exist."""
        if not units:
            return
        with self._lock:
            for u in units:
                self._parts.pop(u, None)
                self._wanted.pop(u, None)
                self._written.pop(u, None)
        try:
            with self.store.session() as s:
                s.execute(delete(UnitStatus).where(UnitStatus.unit.in_(units)))
        except Exception:
            log.warning("could not remove statuses of deleted units", exc_info=True)

    def known_units(self) -> set[str]:
        with self.store.session() as s:
            return set(s.scalars(select(UnitStatus.unit)).all())

    def _write(self, unit: str, status: str, message: str) -> None:
        try:
            with self.store.session() as s:
                row = s.get(UnitStatus, unit)
                if row is None:
                    s.add(
                        UnitStatus(unit=unit, status=status, message=message, worker=self.worker_id)
                    )
                else:
                    row.status = status
                    row.message = message
                    row.worker = self.worker_id
        except Exception:
            log.warning("could not write status of %s", unit, exc_info=True)
            return
        log.info(
            "%s is %s%s",
            unit,
            status,
            f": {message}" if message else "",
            extra={"unit": unit, "status": status},
        )
        with self._lock:
            self._written[unit] = (status, message)


_SEVERITY = {BROKEN: 0, STARTING: 1, ACTIVE: 2, PAUSED: 3, STOPPED: 4}


def _most_severe(parts: dict[str, tuple[str, str]]) -> tuple[str, str]:
    return min(parts.values(), key=lambda sm: _SEVERITY.get(sm[0], 5))
