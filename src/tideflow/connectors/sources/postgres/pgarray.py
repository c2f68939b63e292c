"""Parser for Postgres' array output format (``array_out``).

Rules reproduced from ``array_out``: an optional ``[lo:hi]...=`` dimension prefix appears
only when a lower bound is not 1; elements are separated by the type's delimiter (``,`` for
every built-in type except ``box``, which uses ``;``); an element is double-quoted when it is
empty, equals ``NULL`` in any case, or contains the delimiter, a brace, a quote, a backslash or
white space, and inside quotes ``\\`` escapes the next character; an unquoted ``NULL`` is the
SQL NULL. Sub-arrays nest with braces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def parse_array(
    text: str, convert: Callable[[str], Any] | None = None, delim: str = ","
) -> list[Any]:
    """Parse an array literal into (nested) lists, converting each non-NULL element.

    Raises ``ValueError`` when ``text`` is not an array literal, so the caller can fall back
    to keeping the text (values are never dropped).
    """
    i = 0
    if text.startswith("["):
        # Dimension decoration: Python lists are 0-based anyway, so the bounds carry nothing
        # a list can express.
        i = text.index("=") + 1
    if text[i : i + 1] != "{":
        raise ValueError(f"not an array literal: {text[:40]!r}")
    root: list[Any] = []
    current = root
    stack = [root]
    closed = False
    n = len(text)
    i += 1
    while i < n:
        c = text[i]
        if c == "{":
            child: list[Any] = []
            current.append(child)
            stack.append(child)
            current = child
            i += 1
        elif c == "}":
            stack.pop()
            i += 1
            if not stack:
                closed = True
                break
            current = stack[-1]
        elif c == delim or c.isspace():
            i += 1
        elif c == '"':
            value, i = _quoted(text, i + 1)
            current.append(convert(value) if convert is not None else value)
        else:
            j = i
            while j < n and text[j] != delim and text[j] != "}":
                j += 1
            token = text[i:j].strip()
            if token.upper() == "NULL":
                current.append(None)
            else:
                current.append(convert(token) if convert is not None else token)
            i = j
    if not closed or text[i:].strip():
        raise ValueError(f"malformed array literal: {text[:40]!r}")
    return root


def _quoted(text: str, i: int) -> tuple[str, int]:
    """Read a quoted element starting after its opening quote; return (value, next index)."""
    parts: list[str] = []
    while True:
        q = text.find('"', i)
        b = text.find("\\", i)
        if q < 0:
            raise ValueError("unterminated quoted array element")
        if 0 <= b < q:
            parts.append(text[i:b])
            parts.append(text[b + 1 : b + 2])
            i = b + 2
            continue
        parts.append(text[i:q])
        return "".join(parts), q + 1
