"""Shared fixtures: a live `tideflow serve` process on SQLite and on Postgres metadata."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import pg
from tests.support.server import Server

# Fails the session on replication slots (and publications) it leaves behind, and drops them.
pytest_plugins = ["tests.support.slot_guard"]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def metadata_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None = the embedded SQLite default; otherwise a fresh Postgres metadata database."""
    if request.param == "sqlite":
        yield None
        return
    name = pg.create_database("tfmeta")
    try:
        yield pg.url(name)
    finally:
        pg.drop_database(name)


@pytest.fixture(scope="module")
def server(metadata_url: str | None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A live server (API only, no worker) per metadata backend, shared by a test module."""
    srv = Server(tmp_path_factory.mktemp("srv"), database_url=metadata_url, worker=False)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def api(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture
def engine_server(tmp_path: Path) -> Iterator[Server]:
    """A live server with the embedded worker on SQLite, fresh for each test (a generous start
    timeout: the machine is shared)."""
    srv = Server(tmp_path / "srv", worker=True)
    srv.start(timeout=120)
    try:
        yield srv
    finally:
        srv.stop()
