"""COPY text format (``COPY ... TO STDOUT``, text): fields, escapes, and what a field means.

A line is the fields of one row separated by tabs and ended by a newline; ``\\N`` is NULL; a
backslash, tab, newline, carriage return, backspace, vertical tab or form feed inside a value is
escaped with a backslash. A :class:`~tideflow.events.SnapshotChunk` carries such lines with one
:class:`Field` per column, so a destination can turn them into messages or rows without knowing
which source wrote them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

NULL = b"\\N"

_ESCAPE = re.compile(r"\\(.)")
_UNESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def unescape(text: str) -> str:
    """A field's text with COPY's backslash escapes undone."""
    if "\\" not in text:
        return text
    return _ESCAPE.sub(lambda m: _UNESCAPES.get(m[1], m[1]), text)


def field_text(raw: bytes) -> str | None:
    """One field of a line as the value's output text (None for NULL)."""
    if raw == NULL:
        return None
    return unescape(raw.decode())


#: How a field's (unescaped) text becomes its event value; each is a promise about ``convert``:
#:
#: - ``text``: the value is the text itself (``convert`` is None);
#: - ``int``: ``int(text)``, and the text is the integer as JSON writes it
#:   (``-?(0|[1-9][0-9]*)``);
#: - ``decimal``: ``decimal.Decimal(text)``, and the text is in positional notation
#:   (``-?(0|[1-9][0-9]*)(\.[0-9]+)?``, as Postgres prints numeric) or ``NaN``, ``Infinity``,
#:   ``-Infinity``;
#: - ``timestamptz``: an aware UTC ``datetime`` of an ISO-8601 text such as
#:   ``2024-01-01 00:00:00.5+00`` (``datetime.fromisoformat``, then moved to UTC); a text
#:   that is no such time (``infinity``, BC, year 10000+) stays the text;
#: - ``other``: whatever ``convert`` returns (only ``convert`` knows).
Parse = Literal["text", "int", "decimal", "timestamptz", "other"]


@dataclass(frozen=True, slots=True)
class Field:
    """One column of COPY text lines: its name, and how its text becomes the event value.

    ``convert`` (None for ``text``) is the conversion itself, applied to the unescaped text of a
    non-NULL field; ``parse`` says what it is, so a consumer may skip it where it can produce
    the same result from the text alone (e.g. an integer's text is already its JSON).
    """

    name: str
    parse: Parse
    convert: Callable[[str], Any] | None = None
