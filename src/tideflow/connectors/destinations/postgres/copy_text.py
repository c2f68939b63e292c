"""Rows rendered straight to COPY text lines, one generated function per column layout.

psycopg's ``write_row`` looks up a dumper for every value and formats a tz-aware ``datetime``
through ``str()`` (~1.7 µs of a ~3.7 µs row in the benchmark). Here the column's destination
type says which Python type to expect, so the common value of each column is formatted inline
(``str(int)``, ``str(Decimal)``, a UTC ``datetime`` from its cached second, a ``str`` as is)
and a batch is sent with one ``copy.write`` per chunk. Any other value (arrays, bytes, dates,
floats, non-finite decimals, a non-UTC datetime...) goes through psycopg's own text dumper, so
its text form is exactly what ``write_row`` sent before.

COPY text format: NULL is ``\\N``; backslash, tab, newline and carriage return must be escaped
(psycopg also escapes backspace, vertical tab and form feed; so do we, to stay byte-identical).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from psycopg import adapt
from psycopg.abc import AdaptContext
from psycopg.adapt import PyFormat

# Seconds whose 'YYYY-MM-DD HH:MM:SS' text is kept per renderer (~100 bytes each); the cache
# is emptied when full, so memory stays bounded whatever the data.
SECONDS_CACHED = 4096

# Rows per string handed to ``copy.write``: large enough to amortise the call, small enough
# that a batch is never held twice in memory as one string.
CHUNK_ROWS = 2000

_ESCAPES = str.maketrans(
    {
        "\\": "\\\\",
        "\t": "\\t",
        "\n": "\\n",
        "\r": "\\r",
        "\b": "\\b",
        "\v": "\\v",
        "\f": "\\f",
    }
)


def escape(text: str) -> str:
    """``text`` as a COPY text field.

    Seven ``in`` tests are seven memchr scans, about half the cost of one ``isprintable`` or a
    regex search on a typical value; only a text holding one of them is translated.
    """
    if (
        "\\" in text
        or "\t" in text
        or "\n" in text
        or "\r" in text
        or "\b" in text
        or "\v" in text
        or "\f" in text
    ):
        return text.translate(_ESCAPES)
    return text


_MODIFIER = re.compile(r"\([^)]*\)")

Render = Callable[[Sequence[Any]], str]
DictRender = Callable[..., str]  # (row: dict, *extra) -> str


class RowRenderer:
    """Builds and caches one render function per tuple of destination column types."""

    def __init__(self, context: AdaptContext | None, encoding: str) -> None:
        self._tx = adapt.Transformer(context)
        self._encoding = encoding
        self._cache: dict[tuple[str, ...], Render] = {}
        self._dict_cache: dict[tuple[tuple[str, ...], tuple[str, ...]], DictRender] = {}
        self._utc = _timestamp_formatter("+00")
        self._naive = _timestamp_formatter("")

    def slow(self, value: Any) -> str:
        """Any value through psycopg's text dumper (what ``write_row`` would send)."""
        if value is None:
            return "\\N"
        dumped = self._tx.get_dumper(value, PyFormat.TEXT).dump(value)
        if dumped is None:
            return "\\N"
        return escape(bytes(dumped).decode(self._encoding))

    def render(self, types: Sequence[str]) -> Render:
        key = tuple(types)
        fn = self._cache.get(key)
        if fn is None:
            fn = self._cache[key] = self._build(key)
        return fn

    def _build(self, types: tuple[str, ...], keys: tuple[str, ...] | None = None) -> Any:
        """``render(row)`` unpacking a sequence, or with ``keys`` ``render(row, *extra)``
        reading a dict."""
        names = [f"v{i}" for i in range(len(types))]
        parts = [_expression(n, t) for n, t in zip(names, types, strict=True)]
        body = "\\t".join("{" + p + "}" for p in parts)
        if keys is None:
            unpack = f"{', '.join(names)}," if names else "_"
            head = f"def render(row):\n    {unpack} = row\n"
        else:
            taken, extra = names[: len(keys)], names[len(keys) :]
            pairs = list(zip(taken, keys, strict=True))
            # repr() of a str is a valid literal for any column name.
            get = [f"        {v} = row[{k!r}]" for v, k in pairs] or ["        pass"]
            fallback = [f"        {v} = row.get({k!r})" for v, k in pairs] or ["        pass"]
            head = "\n".join(
                [
                    f"def render({', '.join(['row', *extra])}):",
                    "    try:",
                    *get,
                    "    except KeyError:",  # a partial row: absent columns are NULL
                    *fallback,
                    "",
                ]
            )
        src = f'{head}    return f"""{body}\\n"""\n'
        scope: dict[str, Any] = {
            "S": self.slow,
            "E": escape,
            "int": int,
            "str": str,
            "Decimal": Decimal,
            "datetime": datetime,
            "UTC": UTC,
            "TZ": self._utc,
            "TS": self._naive,
        }
        exec(compile(src, f"<copy row {types}>", "exec"), scope)
        return scope["render"]

    def render_dict(self, types: Sequence[str], keys: Sequence[str]) -> DictRender:
        """Like :meth:`render` for a row given as a dict plus trailing values:
        ``render(row, *extra)`` formats ``row[key]`` for each of ``keys`` (None when absent),
        then ``extra``, as columns of ``types``. It saves building a tuple per row first."""
        key = (tuple(types), tuple(keys))
        fn = self._dict_cache.get(key)
        if fn is None:
            fn = self._dict_cache[key] = self._build(key[0], key[1])
        return fn

    def lines(self, types: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
        """COPY text of ``rows``, in chunks of up to :data:`CHUNK_ROWS` lines."""
        return chunked(map(self.render(types), rows))


def chunked(lines: Iterable[str]) -> Iterator[str]:
    """COPY lines joined in chunks of up to :data:`CHUNK_ROWS` (one ``copy.write`` each)."""
    chunk: list[str] = []
    append = chunk.append
    for line in lines:
        append(line)
        if len(chunk) >= CHUNK_ROWS:
            yield "".join(chunk)
            chunk.clear()
    if chunk:
        yield "".join(chunk)


def _timestamp_formatter(suffix: str) -> Callable[[datetime], str]:
    """Format a UTC (``suffix`` "+00") or naive (``suffix`` "") datetime as Postgres input.

    ``isoformat`` of an aware datetime costs ~1.1 µs (the offset is a Python-level call);
    change streams carry many timestamps of the same second (``created``/``updated`` columns
    near the commit time), so the date-and-seconds text is cached by second and only the
    microseconds are formatted (~0.6 µs). A miss costs one ``isoformat``.
    """
    cache: dict[int, str] = {}

    def fmt(dt: datetime) -> str:
        key = dt.toordinal() * 86400 + dt.hour * 3600 + dt.minute * 60 + dt.second
        prefix = cache.get(key)
        if prefix is None:
            # 'YYYY-MM-DD HH:MM:SS[.ffffff][+00:00]': years are always 4 digits in Python.
            text = dt.isoformat(" ")
            if len(cache) >= SECONDS_CACHED:
                cache.clear()
            cache[key] = text[:19]
            return text
        us = dt.microsecond
        if us:
            # str(us + 10**6)[1:] zero-pads to 6 digits faster than a format spec.
            return f"{prefix}.{str(us + 1000000)[1:]}{suffix}"
        return prefix + suffix

    return fmt


def _expression(v: str, dest_type: str) -> str:
    """An f-string field formatting variable ``v`` for a column of ``dest_type``.

    Each fast path tests the exact type (``bool`` is an ``int`` subclass, a ``str`` may reach
    any column) and falls back to ``S`` (psycopg) otherwise; ``S`` also renders None.
    """
    t = dest_type.strip().lower()
    # 'timestamp(3) with time zone' → 'timestamp with time zone'; 'boolean DEFAULT false'.
    base = " ".join(_MODIFIER.sub(" ", t).split(" default ", 1)[0].split())
    if t.endswith("[]"):
        fast = None
    elif base in ("bigint", "integer", "smallint"):
        fast = f"str({v}) if type({v}) is int"
    elif base == "numeric":
        # NaN and infinities: psycopg's spelling.
        fast = f"str({v}) if type({v}) is Decimal and {v}.is_finite()"
    elif base in ("timestamptz", "timestamp with time zone"):
        # Only the UTC offset (what sources produce): other zones keep psycopg's form.
        fast = f"TZ({v}) if type({v}) is datetime and {v}.tzinfo is UTC"
    elif base in ("timestamp", "timestamp without time zone"):
        fast = f"TS({v}) if type({v}) is datetime and {v}.tzinfo is None"
    elif base == "boolean":
        return f"'t' if {v} is True else 'f' if {v} is False else S({v})"
    else:
        fast = None
    if fast is None:
        return f"E({v}) if type({v}) is str else S({v})"
    return f"{fast} else E({v}) if type({v}) is str else S({v})"
