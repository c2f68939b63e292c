"""Platform API: /destinations against a live server (SQLite and Postgres metadata)."""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.integration.platform_helpers import (
    DEST_PASSWORD,
    create_destination,
    create_pipeline,
    create_source,
    metadata_bytes,
    metadata_session,
    pg_destination_config,
    unique,
    viewer_client,
)
from tests.support.server import Server
from tideflow.store.models.runtime import UnitStatus

DEVELOPMENT_TAG = "670e5ca40afe1d3983ce0c22"


def test_create_returns_the_bare_object(api: httpx.Client) -> None:
    name = unique("dst")
    r = api.post(
        "/destinations",
        json={
            "name": name,
            "connector": "postgresql",
            "config": pg_destination_config(),
            "created_from": "terraform",
            "tags": [DEVELOPMENT_TAG],
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert re.fullmatch(r"[0-9a-f]{24}", body["id"])
    assert body["name"] == name
    assert body["connector"] == "postgresql"
    assert body["desired_state"] == "Active"
    assert body["connector_status"] == "Unassigned"
    assert body["created_from"] == "terraform"
    assert body["tags"] == [DEVELOPMENT_TAG]
    assert datetime.fromisoformat(body["created_timestamp"]).tzinfo is not None
    assert "topics" not in body


def test_config_is_stored_verbatim_with_json_types(api: httpx.Client) -> None:
    config = pg_destination_config(
        **{
            "insert.mode": "insert",
            "delete.enabled": False,
            "tasks.max": 4,
            "primary.key.fields": "id",
            "extra.float": 1.5,
            "extra.string.number": "10",
        }
    )
    reveal = {"secret_returned": "true"}
    r = api.post(
        "/destinations",
        params=reveal,
        json={"name": unique("dst"), "connector": "postgresql", "config": config},
    )
    assert r.status_code == 200, r.text
    got = api.get(f"/destinations/{r.json()['id']}", params=reveal).json()["result"][0]
    for shown in (r.json()["config"], got["config"]):
        assert shown == config
        assert list(shown) == list(config)
        assert shown["delete.enabled"] is False
        assert shown["extra.string.number"] == "10"


def test_secrets_masked_revealed_and_never_for_viewer(server: Server, api: httpx.Client) -> None:
    dst = create_destination(api)
    assert dst["config"]["connection.password"] == "********"
    revealed = api.get(f"/destinations/{dst['id']}", params={"secret_returned": "true"}).json()
    assert revealed["result"][0]["config"]["connection.password"] == DEST_PASSWORD
    with viewer_client(server, api) as viewer:
        r = viewer.get(f"/destinations/{dst['id']}", params={"secret_returned": "true"})
        assert r.json()["result"][0]["config"]["connection.password"] == "********"


def test_secret_is_not_stored_in_plain_text(server: Server, api: httpx.Client) -> None:
    marker = "plain-" + secrets.token_hex(8)
    dst = create_destination(api, config=pg_destination_config(**{"connection.password": marker}))
    raw = metadata_bytes(server)
    assert dst["name"].encode() in raw
    assert marker.encode() not in raw


def test_put_replaces_and_keeps_masked_secret(api: httpx.Client) -> None:
    dst = create_destination(api)
    config = dict(dst["config"])
    config["insert.mode"] = "upsert"
    new_name = unique("dst-renamed")
    r = api.put(
        f"/destinations/{dst['id']}",
        json={"name": new_name, "connector": "postgresql", "config": config},
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == new_name
    got = api.get(f"/destinations/{dst['id']}", params={"secret_returned": "true"}).json()
    stored = got["result"][0]["config"]
    assert stored["connection.password"] == DEST_PASSWORD
    assert stored["insert.mode"] == "upsert"


def test_put_unknown_id_is_404(api: httpx.Client) -> None:
    body = {"name": unique("dst"), "connector": "postgresql", "config": pg_destination_config()}
    assert api.put(f"/destinations/{secrets.token_hex(12)}", json=body).status_code == 404


def test_duplicate_name_is_422_already_exists(api: httpx.Client) -> None:
    dst = create_destination(api)
    r = api.post(
        "/destinations",
        json={"name": dst["name"], "connector": "postgresql", "config": pg_destination_config()},
    )
    assert r.status_code == 422
    assert "already exists" in r.json()["detail"]


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"connection.password": None}, "connection.password"),
        ({"database.port.user.defined": "five"}, "database.port.user.defined"),
        ({"insert.mode": "merge"}, "insert.mode"),
        ({"delete.enabled": [True]}, "delete.enabled"),
        ({"snapshot.load.connections": 0}, "snapshot.load.connections"),
        ({"snapshot.load.connections": 9}, "snapshot.load.connections"),
    ],
    ids=[
        "password-null",
        "port-text",
        "insert-mode-unknown",
        "delete-list",
        "load-connections-0",
        "load-connections-9",
    ],
)
def test_bad_config_is_422_naming_the_key(
    api: httpx.Client, change: dict[str, Any], key: str
) -> None:
    config = pg_destination_config(**change)
    r = api.post(
        "/destinations", json={"name": unique("dst"), "connector": "postgresql", "config": config}
    )
    assert r.status_code == 422, r.text
    assert key in r.json()["detail"]


def test_missing_required_key_is_422_naming_it(api: httpx.Client) -> None:
    config = pg_destination_config()
    del config["connection.username"]
    r = api.post(
        "/destinations", json={"name": unique("dst"), "connector": "postgresql", "config": config}
    )
    assert r.status_code == 422
    assert "connection.username" in r.json()["detail"]


def test_unknown_connector_and_unknown_tag_are_422(api: httpx.Client) -> None:
    body = {"name": unique("dst"), "connector": "teradata", "config": pg_destination_config()}
    assert api.post("/destinations", json=body).status_code == 422
    missing = secrets.token_hex(12)
    body = {
        "name": unique("dst"),
        "connector": "postgresql",
        "config": pg_destination_config(),
        "tags": [missing],
    }
    r = api.post("/destinations", json=body)
    assert r.status_code == 422
    assert missing in r.json()["detail"]


def test_get_unknown_id_is_an_empty_result(api: httpx.Client) -> None:
    r = api.get(f"/destinations/{secrets.token_hex(12)}")
    assert r.status_code == 200
    assert r.json()["result"] == []


def test_list_envelope_and_pagination(api: httpx.Client) -> None:
    prefix = unique("dpage")
    for c in ("b", "c", "a"):
        create_destination(api, name=f"{prefix}-{c}")
    q = {"partial_name": prefix, "sort": "name", "sort_dir": "desc", "page_size": 2}
    first = api.get("/destinations", params=q).json()
    assert [d["name"] for d in first["result"]] == [f"{prefix}-c", f"{prefix}-b"]
    assert (first["total"], first["has_next"], first["page"], first["page_size"]) == (3, True, 1, 2)
    second = api.get("/destinations", params={**q, "page": 2}).json()
    assert [d["name"] for d in second["result"]] == [f"{prefix}-a"]
    assert second["has_next"] is False


def test_status_follows_the_pipelines_writing_to_it(server: Server, api: httpx.Client) -> None:
    dst = create_destination(api)
    pipe = create_pipeline(api, create_source(api), dst)
    with metadata_session(server) as s:
        s.add(UnitStatus(unit=f"pipeline:{pipe['id']}", status="Active"))
    got = api.get(f"/destinations/{dst['id']}").json()["result"][0]
    assert got["connector_status"] == "Active"


def test_delete_of_a_used_destination_is_409_naming_the_pipeline(api: httpx.Client) -> None:
    dst = create_destination(api)
    pipe = create_pipeline(api, create_source(api), dst)
    r = api.delete(f"/destinations/{dst['id']}")
    assert r.status_code == 409
    assert pipe["name"] in r.json()["detail"]
    api.delete(f"/pipelines/{pipe['id']}").raise_for_status()
    r = api.delete(f"/destinations/{dst['id']}")
    assert r.status_code == 200
    assert r.json()["id"] == dst["id"]
    assert api.get(f"/destinations/{dst['id']}").json()["result"] == []
    assert api.delete(f"/destinations/{dst['id']}").status_code == 404


def test_viewer_may_read_but_not_write(server: Server, api: httpx.Client) -> None:
    dst = create_destination(api)
    body = {"name": unique("dst"), "connector": "postgresql", "config": pg_destination_config()}
    with viewer_client(server, api) as viewer:
        assert viewer.get("/destinations").status_code == 200
        assert viewer.post("/destinations", json=body).status_code == 403
        assert viewer.put(f"/destinations/{dst['id']}", json=body).status_code == 403
        assert viewer.delete(f"/destinations/{dst['id']}").status_code == 403


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/destinations"), ("POST", "/destinations"), ("DELETE", "/destinations/x")],
)
def test_no_token_is_401(server: Server, method: str, path: str) -> None:
    assert httpx.request(method, server.url + path, json={}).status_code == 401
