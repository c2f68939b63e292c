"""Checks that a user's ``additional_conditions`` predicate cannot escape its WHERE clause.

The predicate is spliced into ``WHERE (<predicate>)`` of chunk queries, so it is tokenized
here first: no statement separator, no comments, quotes and parentheses balanced, no dollar
quoting, and no keyword that writes or changes state. Connectors then compile it against the
table (Postgres: ``EXPLAIN`` in a READ ONLY transaction) and chunk queries run READ ONLY, so a
function with side effects fails instead of writing.

MySQL lexes differently (backslash escapes inside strings, ``#`` comments, backtick-quoted
identifiers), so MySQL sources also run :func:`check_mysql`, which reads the predicate the
way MySQL does and refuses what could end a string or an identifier elsewhere than this
module thinks.
"""

from __future__ import annotations

import re
from typing import Final

FORBIDDEN: Final = frozenset(
    {
        "insert",
        "update",
        "delete",
        "merge",
        "drop",
        "create",
        "alter",
        "truncate",
        "grant",
        "revoke",
        "copy",
        "execute",
        "call",
        "do",
        "vacuum",
        "analyze",
        "commit",
        "rollback",
        "begin",
        "savepoint",
        "set",
        "reset",
        "lock",
        "listen",
        "notify",
        "prepare",
        "deallocate",
        "discard",
        "refresh",
        "reindex",
        "cluster",
        "comment",
        "security",
        "into",
        "union",
        "intersect",
        "except",
        "returning",
        "with",
        "declare",
        "fetch",
    }
)
# MySQL functions that touch files or hold the connection (a filter runs on every chunk).
FORBIDDEN_MYSQL: Final = FORBIDDEN | frozenset(
    {"load_file", "outfile", "dumpfile", "sleep", "benchmark", "get_lock", "handler", "load"}
)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
MAX_LENGTH: Final = 4000


class FilterError(ValueError):
    """The predicate is not a single, side-effect-free boolean expression."""


def check(predicate: str) -> str:
    """Return the predicate stripped, or raise :class:`FilterError` saying what is wrong."""
    text = predicate.strip()
    if not text:
        raise FilterError("the filter is empty")
    if len(text) > MAX_LENGTH:
        raise FilterError(f"the filter is longer than {MAX_LENGTH} characters")
    depth = 0
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"":
            i = _skip_quoted(text, i, ch)
            continue
        if ch == ";":
            raise FilterError("the filter may not contain ';'")
        if text.startswith("--", i) or text.startswith("/*", i) or text.startswith("*/", i):
            raise FilterError("the filter may not contain comments")
        if ch == "$" and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            # $1 parameters and $tag$ dollar quotes could hide text from this tokenizer.
            raise FilterError("the filter may not contain '$' parameters or dollar quotes")
        if ch == "\\":
            raise FilterError("the filter may not contain backslashes outside strings")
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise FilterError("the filter closes a parenthesis it did not open")
        elif ch.isalpha() or ch == "_":
            match = _WORD.match(text, i)
            assert match is not None
            word = match.group(0)
            if word.lower() in FORBIDDEN:
                raise FilterError(f"the filter may not contain the keyword {word.upper()}")
            i = match.end()
            continue
        i += 1
    if depth:
        raise FilterError("the filter has unbalanced parentheses")
    return text


def _skip_quoted(text: str, start: int, quote: str) -> int:
    """Index just after the quoted token starting at ``start`` (doubled quotes escape)."""
    if quote == "'" and start > 0 and text[start - 1] in "eE":
        # E'...' strings treat backslashes as escapes: a \' would end them elsewhere.
        raise FilterError("the filter may not contain E'' escape strings")
    i = start + 1
    while i < len(text):
        if text[i] == quote:
            if i + 1 < len(text) and text[i + 1] == quote:
                i += 2
                continue
            return i + 1
        i += 1
    raise FilterError(f"the filter has an unterminated {quote} quote")


def check_mysql(predicate: str) -> str:
    """:func:`check`, then the same rules read with MySQL's lexing (see the module doc)."""
    text = check(predicate)
    if "\\" in text:
        raise FilterError("the filter may not contain backslashes (MySQL string escapes)")
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"`":
            end = text.find(ch, i + 1)
            while end != -1 and end + 1 < n and text[end + 1] == ch:
                end = text.find(ch, end + 2)  # a doubled quote escapes itself
            if end == -1:
                raise FilterError(f"the filter has an unterminated {ch} quote")
            i = end + 1
            continue
        if ch in ";#":
            raise FilterError(f"the filter may not contain {ch!r}")
        if text.startswith("--", i) or text.startswith("/*", i) or text.startswith("*/", i):
            raise FilterError("the filter may not contain comments")
        if ch.isalpha() or ch == "_":
            match = _WORD.match(text, i)
            assert match is not None
            if match.group(0).lower() in FORBIDDEN_MYSQL:
                raise FilterError(f"the filter may not contain {match.group(0).upper()}")
            i = match.end()
            continue
        i += 1
    return text
