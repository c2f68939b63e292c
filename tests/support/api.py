"""Create sources, destinations and pipelines through the live platform API."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.support import pg
from tests.support.server import wait_until


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def pg_source_config(
    dbname: str, tables: str = "public.items", *, port: int | None = None, **extra: Any
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    return {
        "database.hostname.user.defined": pg.HOST,
        "database.port.user.defined": port or pg.PORT,
        "database.user": pg.USER,
        "database.password": pg.PASSWORD,
        "database.dbname": dbname,
        "database.sslmode": "disable",
        "table.include.list.user.defined": tables,
        "slot.name": f"tf_slot_{tag}",
        "publication.name": f"tf_pub_{tag}",
        **extra,
    }


def pg_destination_config(dbname: str, *, port: int | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "database.hostname.user.defined": pg.HOST,
        "database.port.user.defined": port or pg.PORT,
        "database.database.user.defined": dbname,
        "connection.username": pg.USER,
        "connection.password": pg.PASSWORD,
        "database.sslmode": "disable",
        "table.name.prefix": "public",
        "insert.mode": "upsert",
        "delete.enabled": True,
        **extra,
    }


def create(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post(path, json=body)
    assert r.status_code == 200, r.text
    out: dict[str, Any] = r.json()
    return out


def create_pg_source(client: httpx.Client, config: dict[str, Any]) -> dict[str, Any]:
    """A ``postgresql`` source with a unique name (``config``: :func:`pg_source_config`)."""
    return create(
        client, "/sources", {"name": unique("src"), "connector": "postgresql", "config": config}
    )


def create_pg_destination(client: httpx.Client, config: dict[str, Any]) -> dict[str, Any]:
    """A ``postgresql`` destination with a unique name (config: :func:`pg_destination_config`)."""
    return create(
        client,
        "/destinations",
        {"name": unique("dst"), "connector": "postgresql", "config": config},
    )


def create_pipeline(
    client: httpx.Client,
    source: dict[str, Any],
    destination: dict[str, Any],
    topics: list[str] | None = None,
) -> dict[str, Any]:
    return create(
        client,
        "/pipelines",
        {
            "name": unique("pipe"),
            "snapshot_new_tables": False,
            "source": {
                "id": source["id"],
                "name": source["name"],
                "connector": source["connector"],
                "topics": topics or source.get("topics", []),
            },
            "destination": {
                "id": destination["id"],
                "name": destination["name"],
                "connector": destination["connector"],
            },
            "transforms": [],
            "tags": [],
        },
    )


def status(client: httpx.Client, kind: str, unit_id: str) -> str:
    r = client.get(f"/{kind}/{unit_id}")
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    return str(result[0]["connector_status"]) if result else "Gone"


def wait_status(
    client: httpx.Client, kind: str, unit_id: str, want: str, timeout: float = 60
) -> None:
    wait_until(
        lambda: status(client, kind, unit_id) == want,
        timeout,
        what=f"{kind} {unit_id} to be {want}",
    )
