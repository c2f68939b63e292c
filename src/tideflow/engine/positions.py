"""Ordering of serialised source positions.

Positions are connector-defined dicts. The runtime needs a total order to keep checkpoints
forward-only (invariant 2) and to acknowledge the minimum durable position (invariant 1).

Rules: ``{"lsn": int}`` (Postgres) orders by LSN. Any other position orders by its values
taken in sorted key order, so connectors must choose keys and values that sort that way
(e.g. ``{"file": "mysql-bin.000003", "pos": 1234}``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Position = dict[str, Any]


def sort_key(position: Position) -> tuple[Any, ...]:
    lsn = position.get("lsn")
    if isinstance(lsn, int):
        return (lsn,)
    return tuple(position[k] for k in sorted(position))


def before(a: Position, b: Position) -> bool:
    """True when ``a`` is strictly older than ``b``."""
    return bool(sort_key(a) < sort_key(b))


def newest(a: Position | None, b: Position | None) -> Position | None:
    if a is None:
        return b
    if b is None:
        return a
    return b if before(a, b) else a


def oldest(positions: Iterable[Position | None]) -> Position | None:
    """The minimum of ``positions``; None if any is None (nothing is known to be durable)."""
    result: Position | None = None
    for p in positions:
        if p is None:
            return None
        if result is None or before(p, result):
            result = p
    return result


def format_key(position: Position | None) -> str:
    """A file-name-safe rendering of a position (zero-padded so names sort like positions)."""
    if position is None:
        return "0" * 20
    parts = []
    for value in sort_key(position):
        if isinstance(value, int):
            parts.append(f"{value:020d}")
        else:
            parts.append("".join(c if c.isalnum() or c in "-." else "_" for c in str(value)))
    return "_".join(parts)
