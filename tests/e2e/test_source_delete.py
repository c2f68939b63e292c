"""Deleting a Postgres source through the API drops its replication slot and publication.

A slot left behind by a deleted source pins WAL for ever (one once held 48 GB), so the delete
path is checked end to end: live server with its worker, real Postgres.
"""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from tests.e2e.test_pg_pipeline import start_pipeline
from tests.support import pg, workload
from tests.support.server import Server, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def dbs() -> Iterator[tuple[str, str]]:
    with pg.temp_database("src") as src, pg.temp_database("dst") as dst:
        workload.create_schema(src)
        yield src, dst


def slot_exists(slot: str) -> bool:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,))
        return row.fetchone() is not None


def publication_exists(db: str, name: str) -> bool:
    with psycopg.connect(pg.dsn(db), autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,))
        return row.fetchone() is not None


def test_deleting_a_source_drops_its_slot_and_publication(
    dbs: tuple[str, str], engine_server: Server
) -> None:
    src, dst = dbs
    units = start_pipeline(engine_server, src, dst)
    config = units["source"]["config"]
    slot, publication = config["slot.name"], config["publication.name"]
    wait_until(lambda: slot_exists(slot), 30, what="the source's slot")
    assert publication_exists(src, publication)
    with engine_server.client() as c:
        c.delete(f"/pipelines/{units['pipeline']['id']}").raise_for_status()
        r = c.delete(f"/sources/{units['source']['id']}")
        assert r.status_code == 200, r.text
    assert not slot_exists(slot), "a deleted source must not leave its slot pinning WAL"
    assert not publication_exists(src, publication)
