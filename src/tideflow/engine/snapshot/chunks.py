"""DBLog reconciliation of a chunk read with COPY (:class:`~tideflow.events.SnapshotChunk`).

The same rules as :meth:`.window.Window.survivors`, without turning every line into a row:
only the key fields of a line (a text line or a binary row) are parsed, and only when the
window saw changes of the table.
A line whose key the window deleted is dropped; a line whose key the window changed leaves the
chunk and is emitted as one ``op=r`` event with the window's changes merged on top (its state
at the high watermark); every other line stays in the chunk as it was read.
"""

from __future__ import annotations

from tideflow.engine.snapshot.window import Window
from tideflow.events import ChangeEvent, Op, SnapshotChunk


def survivors(chunk: SnapshotChunk, window: Window) -> list[SnapshotChunk | ChangeEvent]:
    """What of ``chunk`` enters the stream at its high watermark, in that order."""
    if window.truncated or not chunk.rows:
        return []
    changed = window.changed
    if not changed:
        return [chunk]
    key_of = chunk.key
    kept: list[bytes] = []
    moved: list[ChangeEvent] = []
    for line in chunk.lines():
        key = key_of(line)
        if key not in changed:
            kept.append(line)
            continue
        merged = changed[key]
        if merged is None:
            continue  # deleted in the window
        row = chunk.decode(line)
        row.update({c: v for c, v in merged.items() if c in row})
        moved.append(
            ChangeEvent(Op.READ, chunk.table, None, row, {}, chunk.commit_ts_ms, None, True)
        )
    out: list[SnapshotChunk | ChangeEvent] = []
    if len(kept) == chunk.rows:
        out.append(chunk)
    elif kept:
        out.append(chunk.keeping(kept))
    out.extend(moved)
    return out
