"""Destination column widening for the mysql destination (pure type logic)."""

from __future__ import annotations

import pytest

from tideflow.connectors.destinations.mysql.tables import widened


@pytest.mark.parametrize(
    ("current", "wanted", "result"),
    [
        ("varchar(300)", "VARCHAR(400)", "VARCHAR(400)"),
        ("char(5)", "VARCHAR(20)", "VARCHAR(20)"),
        ("char(5)", "CHAR(8)", "VARCHAR(8)"),
        ("varchar(300)", "LONGTEXT", "LONGTEXT"),
        ("varbinary(4)", "VARBINARY(8)", "VARBINARY(8)"),
        ("varbinary(4)", "LONGBLOB", "LONGBLOB"),
        ("decimal(30,10)", "DECIMAL(40,12)", "DECIMAL(40,12)"),
        ("decimal(12,2)", "DECIMAL(10,4)", "DECIMAL(14,4)"),
        ("decimal(60,5)", "DECIMAL(40,30)", "DECIMAL(65,30)"),
        ("bigint(20)", "DECIMAL(20,0)", "DECIMAL(20,0)"),
        ("bigint", "DECIMAL(20,0)", "DECIMAL(20,0)"),
        ("varchar(300)", "VARCHAR(200)", None),
        ("longtext", "VARCHAR(10)", None),
        ("decimal(65,30)", "DECIMAL(40,12)", None),
        ("bigint(20)", "BIGINT", None),
        ("double", "BIGINT", None),
        ("varchar(10)", "LONGBLOB", None),
    ],
    ids=lambda v: str(v),
)
def test_widened(current: str, wanted: str, result: str | None) -> None:
    assert widened(current, wanted) == result
