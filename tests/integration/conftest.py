"""Fixtures shared by the postgresql source tests (test_pg_source*.py).

They live here because pytest does not collect a fixture imported under another name, and an
import under its own name is shadowed by the tests' parameters. Modules whose ``db`` is another
kind of database (MySQL, a module-scoped Postgres one) define their own, which wins over this.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support import pg
from tideflow.connectors.sources.postgres.config import PostgresSourceConfig
from tideflow.connectors.sources.postgres.source import PostgresSource


@pytest.fixture
def db() -> Iterator[str]:
    """A fresh Postgres database, dropped after the test."""
    with pg.temp_database("tfsrc") as name:
        yield name


@pytest.fixture
def opened() -> Iterator[Callable[..., PostgresSource]]:
    """Open sources that are closed after the test; the last one opened is then dropped (its
    slot and publication, ``force=True``)."""
    sources: list[PostgresSource] = []

    def open_(
        config: PostgresSourceConfig, position: dict[str, Any] | None = None
    ) -> PostgresSource:
        src = PostgresSource(config, name="test")
        sources.append(src)
        src.open(position)
        return src

    yield open_
    for src in sources:
        src.close()
    for src in sources[-1:]:
        src.drop(force=True)
