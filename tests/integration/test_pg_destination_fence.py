"""Storage-side fencing of the Postgres destination (cluster mode), on a real Postgres.

An earlier owner of a unit (lower lease generation) must never commit a write after a newer
owner claimed the unit: neither a write it starts later, nor a transaction it left open when
its process froze (the newer owner ends that session instead of waiting for it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.integration.test_pg_destination import ITEMS, Events, destinations, item, rows
from tests.support import pg
from tideflow.connectors.destinations.postgres.destination import PostgresDestination
from tideflow.connectors.destinations.postgres.fence import TABLE, application_name
from tideflow.engine.errors import Fenced
from tideflow.events import Op

pytestmark = pytest.mark.integration

UNIT = "pipeline:7d0c/log"


@pytest.fixture
def dbname() -> Iterator[str]:
    with pg.temp_database("tffence") as name:
        yield name


@pytest.fixture
def owner(dbname: str) -> Iterator[Any]:
    with destinations(dbname) as factory:
        yield lambda generation: factory(fence=(UNIT, generation))


def test_an_earlier_owner_writes_nothing_once_a_newer_one_claimed(owner: Any, dbname: str) -> None:
    ev = Events()
    old = owner(1)
    old.write(ev.batch(ev(Op.CREATE, ITEMS, item(1))))
    new = owner(2)
    with pytest.raises(Fenced, match="generation 2"):
        old.write(ev.batch(ev(Op.CREATE, ITEMS, item(2)), ev(Op.DELETE, ITEMS, None, item(1))))
    new.write(ev.batch(ev(Op.CREATE, ITEMS, item(3))))
    assert rows(dbname, "SELECT id FROM dst.items ORDER BY id") == [(1,), (3,)]
    assert rows(dbname, f"SELECT unit, generation FROM dst.{TABLE}") == [(UNIT, 2)]
    # reopening does not bring the earlier owner back either
    with pytest.raises(Fenced):
        owner(1)


def test_a_frozen_owners_open_transaction_is_ended_not_waited_for(owner: Any, dbname: str) -> None:
    ev = Events()
    old = owner(1)
    old.write(ev.batch(ev(Op.CREATE, ITEMS, item(1))))
    # What the earlier owner's write transaction holds when its process freezes mid-write.
    frozen = psycopg.connect(pg.dsn(dbname), application_name=application_name(UNIT))
    frozen.execute(f"SELECT generation FROM dst.{TABLE} WHERE unit = %s FOR SHARE", (UNIT,))
    frozen.execute("DELETE FROM dst.items WHERE id = 1")  # uncommitted, must never land
    claimed: list[PostgresDestination] = []
    taker = threading.Thread(target=lambda: claimed.append(owner(2)), daemon=True)
    taker.start()
    taker.join(60)
    assert claimed, "the newer owner did not get past the frozen transaction"
    with pytest.raises(psycopg.OperationalError):
        frozen.execute("COMMIT")
    frozen.close()
    claimed[0].write(ev.batch(ev(Op.UPDATE, ITEMS, item(1, name="new"), item(1))))
    assert rows(dbname, "SELECT id, name FROM dst.items") == [(1, "new1")]


def test_sessions_of_other_units_are_left_alone(owner: Any, dbname: str) -> None:
    other = psycopg.connect(pg.dsn(dbname), application_name=application_name("another/unit"))
    other.execute("BEGIN")
    other.execute("SELECT 1")
    owner(1)
    owner(2)  # claims over its own generation 1, no other session of the unit exists
    time.sleep(0.2)
    assert other.execute("SELECT 2").fetchone() == (2,)
    other.execute("COMMIT")
    other.close()
    assert application_name("a") != application_name("b")
    assert len(application_name("pipeline:" + "x" * 80)) <= 63
