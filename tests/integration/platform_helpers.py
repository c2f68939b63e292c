"""Helpers for the platform API tests: unique names, valid configs, a viewer client, and
direct access to the server's metadata store (what the engine would write, what is at rest)."""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psycopg
from psycopg import sql
from sqlalchemy.orm import Session

from tests.support import pg
from tests.support.server import Server
from tideflow.store.db import Store

SOURCE_USER = "tideflow_api_test"
SOURCE_PASSWORD = "pg-Source-Secret-7f3a"
DEST_PASSWORD = "pg-Dest-Secret-91bc"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def pg_source_config(**overrides: Any) -> dict[str, Any]:
    """A valid Postgres source config whose upstream exists (the test Postgres, as a role with
    a distinctive password), so deleting the source really cleans up upstream. Slot and
    publication names are unique: a delete never drops anything another test uses."""
    _ensure_source_role()
    suffix = uuid.uuid4().hex[:10]
    config: dict[str, Any] = {
        "database.hostname.user.defined": pg.HOST,
        "database.port.user.defined": pg.PORT,
        "database.user": SOURCE_USER,
        "database.password": SOURCE_PASSWORD,
        "database.dbname": "postgres",
        "database.sslmode": "disable",
        "slot.name": f"tf_api_{suffix}",
        "publication.name": f"tf_api_{suffix}",
        "table.include.list.user.defined": "public.orders,public.customers",
    }
    config.update(overrides)
    return config


@functools.cache
def _ensure_source_role() -> None:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        # An earlier run or a concurrent test process may have made it.
        with contextlib.suppress(psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(SOURCE_USER)))
        conn.execute(
            sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(SOURCE_USER), sql.Literal(SOURCE_PASSWORD)
            )
        )


def pg_destination_config(**overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "database.hostname.user.defined": "warehouse.internal",
        "database.port.user.defined": 5432,
        "database.database.user.defined": "dwh",
        "connection.username": "loader",
        "connection.password": DEST_PASSWORD,
    }
    config.update(overrides)
    return config


def create_source(api: httpx.Client, **body: Any) -> dict[str, Any]:
    payload = {"name": unique("src"), "connector": "postgresql", "config": pg_source_config()}
    payload.update(body)
    r = api.post("/sources", json=payload)
    assert r.status_code == 200, r.text
    return dict(r.json())


def create_destination(api: httpx.Client, **body: Any) -> dict[str, Any]:
    payload = {
        "name": unique("dst"),
        "connector": "postgresql",
        "config": pg_destination_config(),
    }
    payload.update(body)
    r = api.post("/destinations", json=payload)
    assert r.status_code == 200, r.text
    return dict(r.json())


def pipeline_body(
    source: dict[str, Any], destination: dict[str, Any], **body: Any
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "name": unique("pipe"),
        "snapshot_new_tables": True,
        "source": {
            "id": source["id"],
            "name": source["name"],
            "connector": source["connector"],
            "topics": list(source["topics"]),
        },
        "destination": {
            "id": destination["id"],
            "name": destination["name"],
            "connector": destination["connector"],
        },
        "transforms": [],
    }
    payload.update(body)
    return payload


def create_pipeline(
    api: httpx.Client, source: dict[str, Any], destination: dict[str, Any], **body: Any
) -> dict[str, Any]:
    r = api.post("/pipelines", json=pipeline_body(source, destination, **body))
    assert r.status_code == 200, r.text
    return dict(r.json())


def viewer_client(server: Server, api: httpx.Client) -> httpx.Client:
    r = api.post("/auth/credentials", json={"role": "viewer"})
    assert r.status_code == 200, r.text
    cred = r.json()
    return server.client(server.token(cred["client_id"], cred["secret"]))


def _store_url(server: Server) -> str:
    return server.database_url or f"sqlite:///{(server.data_dir / 'metadata.db').resolve()}"


@contextmanager
def metadata_session(server: Server) -> Iterator[Session]:
    """A session on the server's metadata store, committed on exit."""
    store = Store(_store_url(server))
    try:
        with store.session() as session:
            yield session
    finally:
        store.dispose()


def metadata_bytes(server: Server) -> bytes:
    """Everything the metadata store holds for sources and destinations, as stored."""
    if server.database_url is None:
        files = sorted(server.data_dir.glob("metadata.db*"))  # main file, -wal, -shm
        return b"".join(f.read_bytes() for f in files)
    dsn = server.database_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT row_to_json(s)::text FROM sources s "
            "UNION ALL SELECT row_to_json(d)::text FROM destinations d"
        ).fetchall()
    return "\n".join(r[0] for r in rows).encode()
