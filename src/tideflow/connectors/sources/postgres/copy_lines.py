"""Lines of ``COPY ... TO STDOUT`` text, read back into the values a streamed change carries.

A line is the output text of each column (``\\N`` for NULL) separated by tabs; COPY escapes a
backslash, tab, newline, carriage return, backspace, vertical tab and form feed inside a
value. Once unescaped, a field is exactly what pgoutput sends for that value in a session with
the same output styles, so the same :class:`~.types.TypeMap` converters apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tideflow.connectors.sources.postgres.types import Converter, parse_of
from tideflow.copytext import NULL as _NULL
from tideflow.copytext import Field, field_text, unescape

__all__ = ["Layout"]


@dataclass(frozen=True)
class Layout:
    """The field order of a chunk's lines: the ``nkey`` key columns first, then the others."""

    columns: tuple[str, ...]
    converters: tuple[Converter | None, ...]
    nkey: int
    exact: bool  # see SnapshotChunk.exact
    #: the lines described for destinations (SnapshotChunk.fields)
    fields: tuple[Field, ...] = field(init=False, repr=False)
    _fields: tuple[tuple[str, Converter | None], ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        pairs = tuple(zip(self.columns, self.converters, strict=True))
        object.__setattr__(self, "_fields", pairs)
        described = tuple(Field(name, parse_of(convert), convert) for name, convert in pairs)
        object.__setattr__(self, "fields", described)

    def decode(self, line: bytes) -> dict[str, Any]:
        """The row a line holds, as a streamed change's after image."""
        row: dict[str, Any] = {}
        for (name, convert), raw in zip(self._fields, line.split(b"\t"), strict=True):
            if raw == _NULL:
                row[name] = None
                continue
            text = raw.decode()
            if "\\" in text:
                text = unescape(text)
            row[name] = convert(text) if convert is not None else text
        return row

    def key(self, line: bytes) -> tuple[Any, ...]:
        """The values of the key columns of a line (only those fields are parsed)."""
        n = self.nkey
        out = []
        for (_, convert), raw in zip(self._fields[:n], line.split(b"\t", n)[:n], strict=True):
            text = field_text(raw)
            out.append(text if text is None or convert is None else convert(text))
        return tuple(out)

    def key_text(self, line: bytes) -> tuple[str, ...]:
        """The key columns' output text (how snapshot progress records keys)."""
        n = self.nkey
        # A NULL (surrogate) key part stays None, as a plain SELECT would return it.
        return tuple(field_text(raw) for raw in line.split(b"\t", n)[:n])  # type: ignore[misc]
