"""Streams API: /api/connections (and /v1/api/connections) on a live server."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.integration.platform_helpers import (
    create_destination,
    create_pipeline,
    create_source,
    metadata_session,
    unique,
)
from tests.support.server import Server
from tideflow.store.models.resources import Connection

PASSWORD = "conn-Secret-5d2e"
PREFIXES = ["/api", "/v1/api"]


def connection_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": unique("conn"),
        "kind": "postgres",
        "host": "db.internal",
        "port": 5432,
        "username": "cdc",
        "password": PASSWORD,
        "database": "shop",
        "options": {"sslmode": "disable", "heartbeat.enabled": True},
    }
    body.update(overrides)
    return body


def create_connection(api: httpx.Client, prefix: str = "/api", **overrides: Any) -> dict[str, Any]:
    r = api.post(f"{prefix}/connections", json=connection_body(**overrides))
    assert r.status_code == 201, r.text
    return dict(r.json()["data"])


def create_stream(api: httpx.Client, connection_id: str) -> dict[str, Any]:
    pipe = create_pipeline(api, create_source(api), create_destination(api))
    r = api.post(
        "/api/streams",
        json={
            "name": unique("stream"),
            "sourceType": "postgres_cdc",
            "pipelineId": pipe["id"],
            "connectionId": connection_id,
            "config": {"tables": ["public.orders"]},
        },
    )
    assert r.status_code == 201, r.text
    return dict(r.json()["data"])


@pytest.mark.parametrize("prefix", PREFIXES)
def test_create_and_get(api: httpx.Client, prefix: str) -> None:
    body = connection_body()
    r = api.post(f"{prefix}/connections", json=body)
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    assert re.fullmatch(r"conn_[0-9a-f]{16}", data["id"])
    assert data["type"] == "connection"
    attrs = data["attributes"]
    expected = {k: v for k, v in body.items() if k != "password"}
    assert {k: attrs[k] for k in expected} == expected
    assert attrs["password"] == "********" and attrs["has_password"] is True
    assert attrs["stream_count"] == 0
    assert PASSWORD not in r.text
    for p in PREFIXES:
        got = api.get(f"{p}/connections/{data['id']}")
        assert got.status_code == 200
        assert got.json()["data"] == data


def test_password_is_encrypted_at_rest(server: Server, api: httpx.Client) -> None:
    conn = create_connection(api)
    with metadata_session(server) as s:
        row = s.scalar(select(Connection).where(Connection.id == conn["id"]))
        assert row is not None
        stored = row.config
    assert set(stored["password"]) == {"$secret"}
    assert PASSWORD not in repr(stored)


def test_connection_without_password(api: httpx.Client) -> None:
    conn = create_connection(api, password=None, username=None, kind="kafka", port=None)
    assert conn["attributes"]["password"] is None
    assert conn["attributes"]["has_password"] is False


@pytest.mark.parametrize(
    "overrides",
    [
        {"kind": "oracle"},
        {"port": 0},
        {"port": 70000},
        {"host": ""},
        {"host": None},
        {"name": ""},
        {"options": {"nested": {"a": 1}}},
        {"unexpected": 1},
        {"name": "nul\u0000byte"},
    ],
    ids=[
        "unknown-kind",
        "port-zero",
        "port-too-big",
        "empty-host",
        "null-host",
        "empty-name",
        "nested-option",
        "unknown-field",
        "nul-in-name",
    ],
)
def test_invalid_connection_is_422(api: httpx.Client, overrides: dict[str, Any]) -> None:
    r = api.post("/api/connections", json=connection_body(**overrides))
    assert r.status_code == 422, r.text
    error = r.json()["errors"][0]
    assert error["status"] == "422" and error["code"] and error["title"]


def test_duplicate_name_is_422(api: httpx.Client) -> None:
    conn = create_connection(api)
    r = api.post("/api/connections", json=connection_body(name=conn["attributes"]["name"]))
    assert r.status_code == 422
    assert "already exists" in r.json()["errors"][0]["detail"]


def test_unknown_connection_is_404(api: httpx.Client) -> None:
    for path in ("/api/connections/conn_0000000000000000", "/v1/api/connections/nope"):
        r = api.get(path)
        assert r.status_code == 404
        assert r.json()["errors"][0]["code"] == "not_found"
    assert api.patch("/api/connections/conn_0000000000000000", json={}).status_code == 404
    assert api.delete("/api/connections/conn_0000000000000000").status_code == 404


def test_list_with_cursor(api: httpx.Client) -> None:
    created = {create_connection(api)["id"] for _ in range(3)}
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = api.get("/api/connections", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["meta"]["page"]["limit"] == 2
        assert len(body["data"]) <= 2
        seen.extend(c["id"] for c in body["data"])
        cursor = body["meta"]["page"]["next_cursor"]
        assert body["meta"]["page"]["cursor"] == cursor
        if cursor is None:
            break
    assert created <= set(seen)
    assert len(seen) == len(set(seen))
    bad = api.get("/api/connections", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422


def test_update_keeps_or_replaces_the_password(server: Server, api: httpx.Client) -> None:
    conn = create_connection(api)
    path = f"/api/connections/{conn['id']}"
    r = api.patch(path, json={"port": 6432, "options": {}})
    assert r.status_code == 200, r.text
    attrs = r.json()["data"]["attributes"]
    assert attrs["port"] == 6432 and attrs["options"] == {} and attrs["has_password"] is True
    assert attrs["host"] == "db.internal"
    r = api.put(path, json={"password": None})
    assert r.json()["data"]["attributes"]["has_password"] is False
    r = api.patch(path, json={"password": "new-Secret-1"})
    assert r.json()["data"]["attributes"]["password"] == "********"
    assert api.patch(path, json={"kind": "mysql"}).status_code == 200
    assert api.patch(path, json={"port": -1}).status_code == 422
    other = create_connection(api)
    clash = api.patch(path, json={"name": other["attributes"]["name"]})
    assert clash.status_code == 422


def test_changes_reach_the_streams_using_it(api: httpx.Client) -> None:
    conn = create_connection(api)
    stream = create_stream(api, conn["id"])
    source_id = stream["attributes"]["source_id"]
    reveal = {"secret_returned": "true"}
    before = api.get(f"/sources/{source_id}", params=reveal).json()["result"][0]["config"]
    assert before["database.hostname.user.defined"] == "db.internal"
    assert before["database.password"] == PASSWORD
    assert before["database.sslmode"] == "disable"

    r = api.patch(
        f"/api/connections/{conn['id']}",
        json={"host": "db2.internal", "password": "rotated-Pw-9", "options": {}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["data"]["attributes"]["stream_count"] == 1
    after = api.get(f"/sources/{source_id}", params=reveal).json()["result"][0]["config"]
    assert after["database.hostname.user.defined"] == "db2.internal"
    assert after["database.password"] == "rotated-Pw-9"
    assert "database.sslmode" not in after
    assert list(after)[:3] == list(before)[:3]  # keys keep their place
    assert after["table.include.list.user.defined"] == "public.orders"

    # A change the stream's connector would reject is refused as a whole.
    r = api.patch(f"/api/connections/{conn['id']}", json={"kind": "kafka"})
    assert r.status_code == 409
    r = api.patch(f"/api/connections/{conn['id']}", json={"options": {"database.sslmode": "maybe"}})
    assert r.status_code == 422
    assert stream["id"] in r.json()["errors"][0]["detail"]
    still = api.get(f"/api/connections/{conn['id']}").json()["data"]["attributes"]
    assert still["options"] == {}


def test_delete(api: httpx.Client) -> None:
    conn = create_connection(api, prefix="/v1/api")
    r = api.delete(f"/v1/api/connections/{conn['id']}")
    assert r.status_code == 200
    data = r.json()["data"]
    assert data["id"] == conn["id"] and data["type"] == "connection"
    assert data["attributes"]["deleted"] is True and data["attributes"]["deleted_at"]
    assert api.get(f"/api/connections/{conn['id']}").status_code == 404


def test_connection_used_by_a_stream_cannot_be_deleted(api: httpx.Client) -> None:
    conn = create_connection(api)
    stream = create_stream(api, conn["id"])
    r = api.delete(f"/api/connections/{conn['id']}")
    assert r.status_code == 409
    assert stream["id"] in r.json()["errors"][0]["detail"]
    r = api.delete(f"/api/streams/{stream['id']}", params={"force": "true"})  # host unreachable
    assert r.status_code == 200, r.text
    assert api.delete(f"/api/connections/{conn['id']}").status_code == 200
