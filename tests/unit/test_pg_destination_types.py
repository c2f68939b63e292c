"""Postgres destination column types for columns described by other databases' type names."""

from __future__ import annotations

import pytest

from tideflow.connectors.destinations.postgres.types import column_type
from tideflow.events import Column


@pytest.mark.parametrize(
    ("source_type", "kind", "expected"),
    [
        ("bit(1)", "bool", "boolean"),
        ("bit(12)", "bytes", "bytea"),
        ("timestamp(3)", "timestamptz", "timestamptz"),
        ("timestamp with time zone", "timestamptz", "timestamptz"),
        ("datetime(6)", "timestamp", "timestamp"),
        ("boolean", "bool", "boolean"),
        ("bytea", "bytes", "bytea"),
        ("numeric(30,10)", "decimal", "numeric(30,10)"),
    ],
)
def test_type_name_only_refines_its_own_family(source_type: str, kind: str, expected: str) -> None:
    assert column_type(Column("c", source_type, kind)) == expected
