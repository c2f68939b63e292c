"""Platform API: the connector catalogue (/sources/connectors, /destinations/connectors)."""

from __future__ import annotations

import httpx
import pytest

from tests.support.server import Server


def _entries(body: dict[str, object]) -> dict[str, dict[str, object]]:
    (connector,) = body["result"]  # type: ignore[misc]
    return {e["name"]: e for e in connector["config"]}


def test_postgres_source_catalogue(api: httpx.Client) -> None:
    r = api.get("/sources/connectors", params={"connector_code": "postgresql"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["total"], body["page"], body["has_next"]) == (1, 1, False)
    connector = body["result"][0]
    assert connector["connector"] == "postgresql"
    assert connector["kind"] == "source"
    assert connector["display_name"]
    entries = _entries(body)
    password = entries["database.password"]
    assert password["secret"] is True and password["required"] is True
    assert password["value"]["control"] == "password"
    port = entries["database.port.user.defined"]
    assert port["required"] is False
    assert port["value"] == {"control": "number", "type": "integer", "default": 5432}
    sslmode = entries["database.sslmode"]["value"]
    assert "disable" in sslmode["raw_values"] and sslmode["default"] == "require"
    assert entries["table.include.list.user.defined"]["user_defined"] is True
    for entry in entries.values():
        assert {"name", "display_name", "description", "required", "user_defined", "secret"} <= set(
            entry
        )


def test_postgres_destination_catalogue(api: httpx.Client) -> None:
    r = api.get("/destinations/connectors", params={"connector_code": "postgresql"})
    assert r.status_code == 200, r.text
    assert r.json()["result"][0]["kind"] == "destination"
    entries = _entries(r.json())
    assert entries["connection.password"]["secret"] is True
    assert entries["insert.mode"]["value"]["raw_values"] == ["insert", "upsert"]


@pytest.mark.parametrize("kind", ["sources", "destinations"])
def test_without_a_code_lists_every_connector(api: httpx.Client, kind: str) -> None:
    body = api.get(f"/{kind}/connectors", params={"page_size": 100}).json()
    codes = [c["connector"] for c in body["result"]]
    assert "postgresql" in codes
    assert codes == sorted(codes)
    assert body["total"] == len(codes)


@pytest.mark.parametrize("kind", ["sources", "destinations"])
def test_unknown_connector_code_is_422(api: httpx.Client, kind: str) -> None:
    r = api.get(f"/{kind}/connectors", params={"connector_code": "db2-zos"})
    assert r.status_code == 422
    assert "db2-zos" in r.json()["detail"]


def test_catalogue_path_is_not_taken_for_a_source_id(api: httpx.Client) -> None:
    body = api.get("/sources/connectors").json()
    assert body["result"] and "connector" in body["result"][0]


def test_catalogue_needs_a_token(server: Server) -> None:
    assert httpx.get(f"{server.url}/sources/connectors").status_code == 401


def test_openapi_documents_bodies_and_responses(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    paths = spec["paths"]
    schemas = spec["components"]["schemas"]
    create = paths["/sources"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/SourceIn"
    )
    assert "SourceOut" in str(create["responses"]["200"])
    assert "ErrorOut" in str(create["responses"]["422"])
    assert {"topic_ids", "topics", "connector_status"} <= set(schemas["SourceOut"]["properties"])
    assert "PipelineIn" in str(paths["/pipelines"]["post"]["requestBody"])
    assert "ConnectorOut" in str(paths["/sources/connectors"]["get"]["responses"]["200"])
    for path in ("/sources", "/destinations", "/pipelines"):
        params = {p["name"] for p in paths[path]["get"]["parameters"]}
        assert {
            "page",
            "page_size",
            "sort",
            "sort_dir",
            "partial_name",
            "secret_returned",
        } <= params
