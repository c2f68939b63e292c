"""The DBLog reconciliation of one chunk with the changes streamed inside its window.

Between a chunk's low and high watermark, the source runner notes every streamed change of the
chunk's table. At the high watermark, the chunk's copy of a key changed in the window may be
older than those changes, so it must not overwrite them (invariant 3):

- a key whose last change in the window deletes it is dropped from the chunk;
- any other changed key is emitted with the window's changes applied on top of the chunk row
  (the latest value each change sent explicitly wins). Plain DBLog would drop the row instead;
  but a streamed update may be partial (Postgres sends an untouched TOASTed value as
  ``UNCHANGED``) and cannot create the row at a destination that has never seen it. The chunk
  row was read inside the window, so every change it misses is in the window: the merged row
  is the row's state at the high watermark.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tideflow.events import UNCHANGED, ChangeEvent, Op

Key = tuple[Any, ...]


@dataclass(slots=True)
class Window:
    """Changes of ``table`` since the low watermark; owned by the source runner thread."""

    table: str
    key: tuple[str, ...]
    # key → merged explicit values of the changes so far; None: the last change deleted it
    changed: dict[Key, dict[str, Any] | None] = field(default_factory=dict)
    truncated: bool = False

    def note(self, event: ChangeEvent) -> None:
        if event.op is Op.TRUNCATE:
            self.truncated = True
            return
        key = self.key
        old = None if event.before is None else tuple(event.before.get(k) for k in key)
        if event.op is Op.DELETE or event.after is None:
            if old is not None:
                self.changed[old] = None
            return
        new = tuple(event.after.get(k) for k in key)
        if old is not None and old != new:
            self.changed[old] = None  # the key moved: the old key's row is gone
        explicit = {c: v for c, v in event.after.items() if v is not UNCHANGED}
        merged = self.changed.get(new)
        if merged is None:
            self.changed[new] = explicit
        else:
            merged.update(explicit)

    def survivors(self, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """The chunk rows as they stand at the high watermark (see the module docstring)."""
        if self.truncated:
            return []
        if not self.changed:
            return list(rows)
        changed, key = self.changed, self.key
        out = []
        for row in rows:
            k = tuple(row.get(c) for c in key)
            if k not in changed:
                out.append(row)
                continue
            merged = changed[k]
            if merged is not None:
                out.append({**row, **{c: v for c, v in merged.items() if c in row}})
        return out
