"""The source position of the ``postgresql`` connector: a WAL location (LSN).

Serialised as ``{"lsn": <int>}``, where the integer is the 64-bit LSN (``X/Y`` in Postgres'
text form is ``(X << 32) | Y``). A :class:`~tideflow.events.Commit` position is the end LSN of
the commit record (or a keepalive's WAL end): resuming there skips that transaction and
re-delivers everything after it (invariant 2).
"""

from __future__ import annotations

from typing import Any

from tideflow.errors import TerminalError

MAX_LSN = (1 << 64) - 1


def format_lsn(lsn: int) -> str:
    """``X/Y`` text form, as Postgres prints it (``pg_current_wal_lsn()``)."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def parse_lsn(text: str) -> int:
    """Parse Postgres' ``X/Y`` form; raise ``ValueError`` on anything else."""
    high, sep, low = text.partition("/")
    if not sep or not high or not low:
        raise ValueError(f"not an LSN: {text!r}")
    return (int(high, 16) << 32) | int(low, 16)


def to_position(lsn: int) -> dict[str, Any]:
    return {"lsn": lsn}


def lsn_of(position: dict[str, Any]) -> int:
    """The LSN of a stored position; a malformed one is a terminal error (never guess)."""
    value = position.get("lsn") if isinstance(position, dict) else None
    if isinstance(value, str):
        try:
            value = parse_lsn(value)
        except ValueError:
            value = None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_LSN:
        raise TerminalError(
            f"invalid postgresql source position {position!r}: expected {{'lsn': <int>}}",
            code="invalid_position",
        )
    return value
