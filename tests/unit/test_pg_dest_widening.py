"""Which destination column types follow a widened source column (pure type logic)."""

from __future__ import annotations

import pytest

from tideflow.connectors.destinations.postgres.types import widened

CASES = {
    "smallint to integer": ("smallint", "integer", "integer"),
    "integer to bigint": ("integer", "bigint", "bigint"),
    "smallint to bigint": ("smallint", "bigint", "bigint"),
    "bigint stays for integer": ("bigint", "integer", None),
    "numeric precision and scale grow": ("numeric(8,2)", "numeric(12,4)", "numeric(12,4)"),
    "numeric keeps its integer digits when the scale grows": (
        "numeric(8,2)", "numeric(8,4)", "numeric(10,4)"
    ),
    "numeric never narrows": ("numeric(8,2)", "numeric(6,1)", None),
    "numeric to unbounded": ("numeric(8,2)", "numeric", "numeric"),
    "unbounded numeric holds all": ("numeric", "numeric(40,10)", None),
    "bigint to numeric(20,0)": ("bigint", "numeric(20,0)", "numeric(20,0)"),
    "integer to a fractional numeric": ("integer", "numeric(5,2)", "numeric(12,2)"),
    "smallint to an integer-sized numeric": ("smallint", "numeric(8,0)", "integer"),
    "numeric(10,2) to hold bigint": ("numeric(10,2)", "bigint", "numeric(21,2)"),
    "precision over 1000 is unbounded": ("numeric(900,100)", "numeric(1000,500)", "numeric"),
    "real to double": ("real", "double precision", "double precision"),
    "double stays for real": ("double precision", "real", None),
    "varchar to text": ("character varying(20)", "text", "text"),
    "varchar longer": ("character varying(20)", "character varying(40)", "character varying(40)"),
    "varchar never shorter": ("character varying(40)", "character varying(20)", None),
    "array elements widen": ("smallint[]", "integer[]", "integer[]"),
    "same type": ("integer", "integer", None),
    "text to integer is another family": ("text", "integer", None),
    "integer to text is another family": ("integer", "text", None),
    "timestamp spellings": ("timestamp without time zone", "timestamp", None),
}  # fmt: skip


@pytest.mark.parametrize(("current", "wanted", "expected"), CASES.values(), ids=CASES.keys())
def test_widened(current: str, wanted: str, expected: str | None) -> None:
    assert widened(current, wanted) == expected
