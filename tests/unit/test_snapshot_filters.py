"""The filter tokenizer: a predicate can never leave its ``WHERE (...)``."""

from __future__ import annotations

import pytest

from tideflow.engine.snapshot import filters


@pytest.mark.parametrize(
    "predicate",
    [
        "id > 10",
        "status = 'shipped' AND total >= 100.5",
        "name LIKE 'O''Brien%'",
        '"Weird Col" IS NOT NULL',
        "created_at > now() - interval '1 day'",
        "id IN (SELECT id FROM public.vip)",
        "note = 'a; b -- c /* d */'",  # inside a string these are text
        "(a = 1 OR (b = 2 AND c = 3))",
        "updated_by = 'DELETE'",
    ],
)
def test_accepts_plain_predicates(predicate: str) -> None:
    assert filters.check(predicate) == predicate.strip()


@pytest.mark.parametrize(
    ("predicate", "why"),
    [
        ("id > 0; DROP TABLE t", "';'"),
        ("id > 0) OR (true", "closes a parenthesis"),
        ("(id > 0", "unbalanced"),
        ("id > 0 -- trailing", "comments"),
        ("id > 0 /* x */", "comments"),
        ("t = 'open", "unterminated"),
        ('"open = 1', "unterminated"),
        ("id IN (DELETE FROM t RETURNING id)", "DELETE"),
        ("x = (SELECT 1 UNION SELECT 2)", "UNION"),
        ("t = $$x$$", "dollar"),
        ("t = $1", "dollar"),
        ("t = E'\\' OR 1=1 --'", "E''"),
        ("", "empty"),
        ("pg_sleep(1) IS NULL OR true) --", "closes"),
    ],
    ids=[
        "semicolon",
        "close-paren",
        "open-paren",
        "line-comment",
        "block-comment",
        "quote",
        "ident-quote",
        "dml",
        "union",
        "dollar-quote",
        "parameter",
        "e-string",
        "empty",
        "escape",
    ],
)
def test_refuses_escapes(predicate: str, why: str) -> None:
    with pytest.raises(filters.FilterError, match=why):
        filters.check(predicate)
