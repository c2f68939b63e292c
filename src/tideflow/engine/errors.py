"""Errors the runtime and destinations exchange.

Destinations import this module (it has no heavy dependencies) to signal a record they cannot
write; the runtime decides, from the pipeline's poison policy, whether that halts the pipeline
or routes the record to the destination's dead-letter store.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from tideflow.envelope import json_value
from tideflow.errors import TerminalError
from tideflow.events import ChangeEvent


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One change event a destination refused, with the reason it gave."""

    event: ChangeEvent
    error: str

    def fingerprint(self) -> str:
        """Identifies the event across replays, so dead-letter writes can be idempotent."""
        ev = self.event
        doc = [ev.table.name, ev.position, ev.op.value, ev.txid, ev.before, ev.after]
        return hashlib.sha256(orjson.dumps(doc, default=json_value)).hexdigest()


class PoisonRecord(TerminalError):
    """The destination cannot write these events (e.g. a value out of range for its column).

    Raised by ``Destination.write`` after it has rolled back the batch, so nothing of the batch
    is visible. ``letters`` names every refused event (all events of the offending key in the
    batch); the rest of the batch can be written without them.
    """

    code = "poison_record"

    def __init__(self, letters: Sequence[DeadLetter]) -> None:
        first = letters[0]
        table = first.event.table.name
        key = _describe_key(first.event)
        more = f" (and {len(letters) - 1} more events)" if len(letters) > 1 else ""
        super().__init__(f"cannot write a change of {table} key {key}: {first.error}{more}")
        self.letters = list(letters)


class Fenced(TerminalError):
    """A newer owner (higher generation) has written this unit's checkpoint: stop writing."""

    code = "fenced"


def _describe_key(event: ChangeEvent) -> str:
    names = event.table.key
    if not names:
        return "(no key)"
    values = event.key()
    return "(" + ", ".join(f"{n}={v!r}" for n, v in zip(names, values, strict=False)) + ")"


def is_transient(exc: BaseException) -> bool:
    """Transient unless the error says it is terminal (the connector contract)."""
    return not isinstance(exc, TerminalError)
