"""COPY binary format (``COPY ... (FORMAT binary)``): the stream's framing.

A stream is a header (an 11-byte signature, 32-bit flags, a 32-bit header extension length and
the extension), then one tuple per row, then a trailer (the 16-bit field count -1). A tuple is
its 16-bit field count, then per field a 32-bit length (-1 for NULL) and that many bytes of the
type's binary ``send`` form. A binary :class:`~tideflow.events.SnapshotChunk` carries tuples
only, so a destination wraps them in :data:`HEADER` and :data:`TRAILER` to load them.
"""

from __future__ import annotations

import struct
from typing import Final

#: a header with no flags and no extension, as ``COPY ... TO`` writes it
HEADER: Final = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
TRAILER: Final = b"\xff\xff"
_SIGNATURE: Final = HEADER[:11]

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")


def header_length(data: bytes) -> int:
    """Bytes of header at the start of ``data`` (0: none)."""
    if not data.startswith(_SIGNATURE):
        return 0
    (extension,) = _I32.unpack_from(data, 15)
    return 19 + int(extension)


def fields(row: bytes, count: int | None = None) -> list[bytes | None]:
    """The fields of one tuple (None for NULL); only the first ``count`` when given."""
    (present,) = _I16.unpack_from(row, 0)
    out: list[bytes | None] = []
    at = 2
    for _ in range(present if count is None else min(count, present)):
        (size,) = _I32.unpack_from(row, at)
        at += 4
        if size < 0:
            out.append(None)
            continue
        out.append(row[at : at + size])
        at += size
    return out
