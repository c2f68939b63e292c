"""Watermark records: the marks a snapshot writes into the change stream around each chunk.

They travel as logical messages (``Message`` records) with prefix :data:`PREFIX` and a small
JSON body ``{"id": <chunk id>, "kind": "low" | "high" | "blocking"}``. The id carries a token
of the coordinator run, so marks replayed after a restart (from before the last checkpoint)
match no chunk of the new run and are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import orjson

from tideflow.events import Message

PREFIX: Final = "tideflow_snapshot"
Kind = Literal["low", "high", "blocking"]
_KINDS: Final = frozenset({"low", "high", "blocking"})


@dataclass(frozen=True, slots=True)
class Watermark:
    id: str
    kind: Kind


def encode(mark: Watermark) -> str:
    return orjson.dumps({"id": mark.id, "kind": mark.kind}).decode()


def decode(message: Message) -> Watermark | None:
    """The watermark a message carries, or None for other messages and malformed bodies."""
    if message.prefix != PREFIX:
        return None
    try:
        body = orjson.loads(message.content)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(body, dict):
        return None
    mark_id, kind = body.get("id"), body.get("kind")
    if not isinstance(mark_id, str) or kind not in _KINDS:
        return None
    return Watermark(mark_id, kind)
