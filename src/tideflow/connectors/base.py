"""Contracts between the runtime and connectors.

Connectors only read or write. The runtime (``tideflow.engine``) owns batching, retries with
backoff, ordering, acknowledgements, dead-letter routing and metrics. A connector signals
failures with :class:`~tideflow.errors.TransientError` (the runtime retries: 1 s doubling to
30 s, jittered) or :class:`~tideflow.errors.TerminalError` (the unit goes to an error state
with the message). Any other exception is treated as transient.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from tideflow.events import Batch, Record

ConfigT = TypeVar("ConfigT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Problem:
    """One preflight finding. ``fatal`` problems refuse a start; others are warnings."""

    check: str
    message: str
    fatal: bool = True


class Source(abc.ABC, Generic[ConfigT]):
    """Reads changes from one upstream system (one slot, one binlog reader, one consumer group).

    Lifecycle, all called from the single runtime thread that owns this instance:

    1. ``preflight()`` may be called on its own (API create/start) or before ``open``.
    2. ``open(position)`` connects and starts reading after ``position`` (``None`` = from the
       source's current state, creating slots/publications as needed).
    3. ``poll(timeout)`` is called in a loop; it returns quickly with what is available
       (possibly nothing after ``timeout`` seconds). It must bound how much it returns per call
       (``max_records``) so that memory stays bounded (invariant 6).
    4. ``ack(position)`` is called with a :class:`~tideflow.events.Commit` position once every
       record up to it is durable at every destination and checkpointed (invariant 1). The
       source must then allow upstream to release data up to there (slot flush LSN, offsets).
       ``ack`` is never called with an older position than a previous call (invariant 2).
    5. ``close()`` releases connections; it is called once, also after errors. It must not
       raise.

    ``drop()`` removes upstream state the source created (slot, publication) when the source
    is deleted; it may run on a different thread after ``close``.
    """

    connector: ClassVar[str]

    def __init__(self, config: ConfigT, *, name: str) -> None:
        self.config = config
        self.name = name

    def preflight(self) -> list[Problem]:
        return []

    @abc.abstractmethod
    def open(self, position: dict[str, Any] | None) -> None: ...

    @abc.abstractmethod
    def poll(self, timeout: float, max_records: int) -> Sequence[Record]: ...

    @abc.abstractmethod
    def ack(self, position: dict[str, Any]) -> None: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def drop(self, *, force: bool = False) -> None:
        """Remove upstream state created for this source (default: nothing to remove)."""


class Destination(abc.ABC, Generic[ConfigT]):
    """Writes batches of change events durably.

    Called from one runtime thread per pipeline: ``open()`` once, ``write(batch)`` in order,
    ``close()`` once (must not raise). ``write`` returns only when the batch is durable
    (committed, flushed, acknowledged by the broker). Batches may be replayed after a crash
    (invariant 2): writers that can must apply them idempotently (upsert/delete by key). Order
    within a batch and across batches must be preserved per key (invariant 3).
    """

    connector: ClassVar[str]

    def __init__(self, config: ConfigT, *, name: str) -> None:
        self.config = config
        self.name = name

    def preflight(self) -> list[Problem]:
        return []

    @abc.abstractmethod
    def open(self) -> None: ...

    @abc.abstractmethod
    def write(self, batch: Batch) -> None: ...

    def fence(self, unit: str, generation: int) -> None:
        """Called before ``open()`` in cluster mode with the lease of the unit writing here.

        A destination that can should refuse, in the write's own transaction, any write of
        ``unit`` with a generation older than one that has written (storage-side fencing: a
        write in flight when its worker froze must not land after the new owner's). Default:
        nothing, the runtime's write-side fencing alone applies.
        """

    @abc.abstractmethod
    def close(self) -> None: ...
