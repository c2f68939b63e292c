"""enrich against a real Postgres lookup table: the runner alone, then in a live pipeline.

Judged by the outputs and the destination's contents.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from tests.e2e.test_transforms import rows
from tests.support import api, pg
from tests.support.server import Server, wait_until
from tideflow.engine.transforms.enrich import PREFIX, EnrichRunner, parse
from tideflow.engine.transforms.records import Input, Output
from tideflow.engine.transforms.runtime import Failure
from tideflow.errors import TerminalError

pytestmark = pytest.mark.integration

LOOKUP = """
CREATE SCHEMA crm;
CREATE TABLE crm.customers (id integer PRIMARY KEY, name text NOT NULL, tier text,
                            credit numeric(10, 2), since date);
INSERT INTO crm.customers VALUES (1, 'ann', 'gold', 100.50, '2020-01-02'),
                                 (2, 'bob', NULL, NULL, NULL), (3, 'cy', 'silver', 7, '2021-03-04');
CREATE TABLE crm.regions (country text, city text, region text, PRIMARY KEY (country, city));
INSERT INTO crm.regions VALUES ('fr', 'paris', 'eu-west'), ('us', 'paris', 'us-south');
"""


@pytest.fixture(scope="module")
def lookup_db() -> Iterator[str]:
    with pg.temp_database("lookup") as name:
        with psycopg.connect(pg.dsn(name), autocommit=True) as conn:
            conn.execute(LOOKUP)
        yield name


def config(dbname: str, **extra: Any) -> dict[str, Any]:
    out = {
        PREFIX + "hostname": pg.HOST,
        PREFIX + "port": pg.PORT,
        PREFIX + "database": dbname,
        PREFIX + "user": pg.USER,
        PREFIX + "password": pg.PASSWORD,
        PREFIX + "sslmode": "disable",
        PREFIX + "table": "crm.customers",
        PREFIX + "key.mapping": {"customer_id": "id"},
        PREFIX + "fields": {
            "name": "customer",
            "tier": "tier",
            "credit": "credit",
            "since": "since",
        },
    }
    out.update({PREFIX + k: v for k, v in extra.items()})
    return out


def runner(dbname: str, **extra: Any) -> EnrichRunner:
    cfg = parse(config(dbname, **extra))
    assert cfg is not None
    return EnrichRunner(cfg)


def inputs(*customer_ids: Any) -> list[Input]:
    return [
        Input({"id": i, "customer_id": c}, {"id": i}, "public.orders", 0)
        for i, c in enumerate(customer_ids)
    ]


ANN = {"customer": "ann", "tier": "gold", "credit": "100.50", "since": "2020-01-02"}
BOB = {"customer": "bob", "tier": None, "credit": None, "since": None}
NULLS = dict.fromkeys(ANN)


def test_lookup_batches_caches_and_renders(lookup_db: str) -> None:
    r = runner(lookup_db)
    try:
        # "2" (text for an integer column) still matches; "x" cannot be an integer: a miss.
        got = r.run(inputs(1, "2", 1, 99, None, "x"))
        assert got == [
            Output({"id": 0, "customer_id": 1, **ANN}),
            Output({"id": 1, "customer_id": "2", **BOB}),
            Output({"id": 2, "customer_id": 1, **ANN}),
            Output({"id": 3, "customer_id": 99, **NULLS}),
            Output({"id": 4, "customer_id": None, **NULLS}),
            Output({"id": 5, "customer_id": "x", **NULLS}),
        ]
        assert r.queries == 1  # one query for the batch
        r.run(inputs(1, 99, "2"))
        assert r.queries == 1  # hits and misses come from the cache
        r.run(inputs(3))
        assert r.queries == 2
    finally:
        r.close()


@pytest.mark.parametrize("on_miss", ["keep", "drop", "fail"])
def test_on_miss(lookup_db: str, on_miss: str) -> None:
    r = runner(lookup_db, **{"on.miss": on_miss})
    try:
        hit, miss = r.run(inputs(1, 42))
        assert hit == Output({"id": 0, "customer_id": 1, **ANN})
        if on_miss == "keep":
            assert miss == Output({"id": 1, "customer_id": 42})
        elif on_miss == "drop":
            assert miss == Output(None)
        else:
            assert isinstance(miss, Failure)
            assert miss.message == "enrich: no row in crm.customers for customer_id=42"
    finally:
        r.close()


def test_composite_key_and_no_cache(lookup_db: str) -> None:
    r = runner(
        lookup_db,
        table="crm.regions",
        **{"key.mapping": {"country": "country", "city": "city"}, "fields": ["region"]},
        **{"cache.ttl.ms": 0},
    )
    try:
        rows_in = [
            Input({"country": c, "city": city}, {}, "public.t", 0)
            for c, city in (("fr", "paris"), ("us", "paris"), ("fr", "lyon"))
        ]
        assert [o.value for o in r.run(rows_in) if isinstance(o, Output)] == [
            {"country": "fr", "city": "paris", "region": "eu-west"},
            {"country": "us", "city": "paris", "region": "us-south"},
            {"country": "fr", "city": "lyon", "region": None},
        ]
        r.run(rows_in)
        assert r.queries == 2  # cache.ttl.ms = 0: every batch asks
    finally:
        r.close()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"table": "crm.nope"}, "enrich table crm.nope does not exist"),
        ({"fields": ["name", "email"]}, "has no column(s) email"),
    ],
    ids=["no-table", "no-column"],
)
def test_bad_table_or_column_is_terminal(
    lookup_db: str, extra: dict[str, Any], message: str
) -> None:
    r = runner(lookup_db, **extra)
    try:
        with pytest.raises(TerminalError) as info:
            r.run(inputs(1))
        assert message in info.value.message
    finally:
        r.close()


ORDERS = """
CREATE TABLE public.orders (id bigint PRIMARY KEY, customer_id integer, amount numeric(10, 2));
"""


def test_enrich_in_a_pipeline_and_through_the_api(lookup_db: str, engine_server: Server) -> None:
    with (
        pg.temp_database("esrc") as src,
        pg.temp_database("edst") as dst,
        engine_server.client() as c,
    ):
        with psycopg.connect(pg.dsn(src), autocommit=True) as conn:
            conn.execute(ORDERS)
        t = api.create(
            c,
            "/transforms",
            {
                "transform": "enrich",
                "config": {
                    "transforms.name": api.unique("enrich"),
                    **config(lookup_db, fields={"name": "customer", "tier": "tier"}),
                },
            },
        )
        assert t["config"][PREFIX + "password"] == "********"  # never shown
        assert stored_password(engine_server, t["id"]).keys() == {"$secret"}  # sealed at rest
        # Try it on a sample record (no deploy needed: enrich runs from its config).
        r = c.post(
            f"/transforms/{t['id']}/test",
            json={"records": [{"value": {"id": 1, "customer_id": 3}, "topic": "public.orders"}]},
        )
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["outputs"][0]["value"] == {
            "id": 1,
            "customer_id": 3,
            "customer": "cy",
            "tier": "silver",
        }
        # A PUT that sends the mask back keeps the stored password.
        body = {"id": t["id"], "transform": "enrich", "config": t["config"]}
        assert c.put("/transforms", json=body).status_code == 200
        assert stored_password(engine_server, t["id"]).keys() == {"$secret"}
        source = api.create_pg_source(c, api.pg_source_config(src, "public.orders"))
        destination = api.create_pg_destination(c, api.pg_destination_config(dst))
        pipe = api.create(
            c,
            "/pipelines",
            {
                "name": api.unique("pipe"),
                "snapshot_new_tables": False,
                "source": {
                    "id": source["id"],
                    "name": source["name"],
                    "connector": "postgresql",
                    "topics": [],
                },
                "destination": {
                    "id": destination["id"],
                    "name": destination["name"],
                    "connector": "postgresql",
                },
                "transforms": [{"id": t["id"]}],
                "tags": [],
            },
        )
        api.wait_status(c, "pipelines", pipe["id"], "Active")
        api.wait_status(c, "sources", source["id"], "Active")
        with psycopg.connect(pg.dsn(src), autocommit=True) as conn:
            conn.execute(
                "INSERT INTO orders SELECT g, CASE WHEN g % 4 = 0 THEN NULL ELSE g % 5 END, g "
                "FROM generate_series(1, 40) g"
            )
        names = {1: ("ann", "gold"), 2: ("bob", None), 3: ("cy", "silver")}
        want = {
            i: (None if i % 4 == 0 else i % 5, *names.get(i % 5 if i % 4 else -1, (None, None)))
            for i in range(1, 41)
        }
        wait_until(
            lambda: rows(dst, "orders", "customer_id, customer, tier") == want,
            90,
            interval=0.5,
            what="enriched orders at the destination",
        )
        status = c.get(f"/transforms/{t['id']}/job_status").json()
        assert status["status"] == "RUNNING", status


def test_rollup_and_sql_join_cannot_be_deployed(engine_server: Server) -> None:
    with engine_server.client() as c:
        for kind in ("rollup", "sql_join"):
            t = api.create(
                c,
                "/transforms",
                {
                    "transform": kind,
                    "config": {"transforms.name": api.unique(kind), "transforms.language": "SQL"},
                    "implementation": {"language": "SQL", "joinSQL": "SELECT 1"},
                },
            )
            for target in ("live", "preview"):
                r = c.put(f"/transforms/{t['id']}/deploy-job-{target}/1")
                assert r.status_code == 422, r.text
                assert r.json()["code"] == "not_implemented"
                assert f"of type {kind}" in r.json()["detail"]


def test_permission_denied_is_terminal(lookup_db: str) -> None:
    role = f"tf_noread_{lookup_db[-6:]}"
    with psycopg.connect(pg.dsn(lookup_db), autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
        conn.execute(f"GRANT USAGE ON SCHEMA crm TO {role}")
    try:
        r = runner(lookup_db, user=role, password="pw")
        try:
            with pytest.raises(TerminalError) as info:
                r.run(inputs(1))
            assert "enrich lookup in crm.customers failed: permission denied" in info.value.message
        finally:
            r.close()
    finally:
        with psycopg.connect(pg.dsn(lookup_db), autocommit=True) as conn:
            conn.execute(f"DROP OWNED BY {role}")
            conn.execute(f"DROP ROLE {role}")


def stored_password(server: Server, transform_id: str) -> dict[str, Any]:
    """The lookup password as the metadata store holds it."""
    with sqlite3.connect(server.data_dir / "metadata.db") as db:
        (raw,) = db.execute(
            "SELECT config FROM transforms WHERE id = ?", (transform_id,)
        ).fetchone()
    value = json.loads(raw)[PREFIX + "password"]
    assert isinstance(value, dict), f"password stored in plain text: {value!r}"
    return value
