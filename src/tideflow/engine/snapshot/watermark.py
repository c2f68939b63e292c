"""Watermark records: the marks a snapshot writes into the change stream around each chunk.

A mark is a small JSON body ``{"id": <chunk id>, "kind": "low" | "high" | "blocking"}``. The id
carries a token of the coordinator run, so marks replayed after a restart (from before the last
checkpoint) match no chunk of the new run and are ignored. It reaches the coordinator as a
:class:`~tideflow.events.Message` in one of two forms:

- a logical message with prefix :data:`PREFIX` whose content is the body (Postgres,
  ``pg_logical_emit_message``);
- a row inserted into a **signal table** (``<database>.tideflow_signal``, columns ``id``,
  ``type``, ``data`` as in Debezium's signalling table), which the source turns into a message
  with prefix :data:`SIGNAL_PREFIX` whose content is the row as a JSON object; ``data`` holds
  the body and ``type`` names the kind (:func:`signal_row`). Rows of other types (signals
  written by people or other tools) are not marks.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from tideflow.events import Message

PREFIX: Final = "tideflow_snapshot"
SIGNAL_PREFIX: Final = "tideflow_signal"
SIGNAL_TABLE: Final = "tideflow_signal"
Kind = Literal["low", "high", "blocking"]
_KINDS: Final = frozenset({"low", "high", "blocking"})
SIGNAL_TYPES: Final[dict[str, str]] = {
    "low": "snapshot-window-open",
    "high": "snapshot-window-close",
    "blocking": "snapshot-blocking",
}
_SIGNAL_KINDS: Final = {v: k for k, v in SIGNAL_TYPES.items()}


@dataclass(frozen=True, slots=True)
class Watermark:
    id: str
    kind: Kind


def encode(mark: Watermark) -> str:
    return orjson.dumps({"id": mark.id, "kind": mark.kind}).decode()


def signal_row(body: str) -> tuple[str, str, str]:
    """``(id, type, data)`` of the signal-table row carrying the encoded mark ``body``.

    The row id is random and short (32 characters), so it fits Debezium's ``VARCHAR(42)``.
    """
    parsed = _parse(body)
    if parsed is None:
        raise ValueError(f"not a watermark body: {body!r}")
    return secrets.token_hex(16), SIGNAL_TYPES[parsed.kind], body


def decode(message: Message) -> Watermark | None:
    """The watermark a message carries, or None for other messages and malformed bodies."""
    if message.prefix == PREFIX:
        return _parse(message.content)
    if message.prefix != SIGNAL_PREFIX:
        return None
    row = _loads(message.content)
    if not isinstance(row, dict):
        return None
    if "data" not in row and len(row) == 3:
        # The binlog named no columns (binlog_row_metadata=MINIMAL): id, type, data in order.
        row = dict(zip(("id", "type", "data"), row.values(), strict=True))
    kind = _SIGNAL_KINDS.get(str(row.get("type")))
    data = row.get("data")
    if kind is None or not isinstance(data, str):
        return None
    mark = _parse(data)
    return mark if mark is not None and mark.kind == kind else None


def _parse(content: str | bytes) -> Watermark | None:
    body = _loads(content)
    if not isinstance(body, dict):
        return None
    mark_id, kind = body.get("id"), body.get("kind")
    if not isinstance(mark_id, str) or kind not in _KINDS:
        return None
    return Watermark(mark_id, kind)


def _loads(content: str | bytes) -> Any:
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
