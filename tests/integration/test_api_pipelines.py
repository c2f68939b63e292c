"""Platform API: /pipelines against a live server (SQLite and Postgres metadata)."""

from __future__ import annotations

import re
import secrets
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.integration.platform_helpers import (
    create_destination,
    create_pipeline,
    create_source,
    metadata_session,
    pipeline_body,
    unique,
    viewer_client,
)
from tests.support.server import Server
from tideflow.ids import new_id
from tideflow.store.models.resources import Transform
from tideflow.store.models.runtime import UnitStatus

DEVELOPMENT_TAG = "670e5ca40afe1d3983ce0c22"
ECHOED = ("name", "snapshot_new_tables", "source", "destination", "transforms", "tags")


def _transform(server: Server, kind: str = "map_filter") -> dict[str, Any]:
    """A transform row as the transforms API would store it."""
    tid, name = new_id(), unique("tx")
    with metadata_session(server) as s:
        s.add(Transform(id=tid, name=name, transform=kind, config={}))
    return {"id": tid, "name": name}


def test_create_echoes_the_body_and_starts_at_once(server: Server, api: httpx.Client) -> None:
    src, dst = create_source(api), create_destination(api)
    tx = _transform(server)
    body = pipeline_body(
        src,
        dst,
        tags=[DEVELOPMENT_TAG],
        created_from="terraform",
        transforms=[
            {
                "id": tx["id"],
                "name": tx["name"],
                "start_time": "2024-05-01T00:00:00Z",
                "topic_id": src["topic_ids"][0],
                "topic": src["topics"][0],
            },
            {"id": tx["id"], "topic_id": src["topic_ids"][1], "topic": src["topics"][1]},
        ],
    )
    r = api.post("/pipelines", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert re.fullmatch(r"[0-9a-f]{24}", out["id"])
    for key in ECHOED:
        assert out[key] == body[key], key
    assert out["created_from"] == "terraform"
    assert out["desired_state"] == "Active"
    assert out["connector_status"] == "Unassigned"
    assert datetime.fromisoformat(out["created_timestamp"]).tzinfo is not None
    got = api.get(f"/pipelines/{out['id']}").json()["result"][0]
    for key in ECHOED:
        assert got[key] == body[key], key


@pytest.mark.parametrize("transforms", [None, "omitted", []], ids=["null", "omitted", "empty"])
def test_transforms_is_an_empty_list_never_null(api: httpx.Client, transforms: Any) -> None:
    body = pipeline_body(create_source(api), create_destination(api))
    if transforms == "omitted":
        del body["transforms"]
    else:
        body["transforms"] = transforms
    r = api.post("/pipelines", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["transforms"] == []
    got = api.get(f"/pipelines/{r.json()['id']}").json()["result"][0]
    assert got["transforms"] == []


def test_source_and_destination_details_are_filled_in_when_left_out(api: httpx.Client) -> None:
    src, dst = create_source(api), create_destination(api)
    body = {
        "name": unique("pipe"),
        "source": {"id": src["id"], "topics": ["public.orders"]},
        "destination": {"id": dst["id"]},
    }
    out = api.post("/pipelines", json=body).json()
    assert out["source"] == {
        "id": src["id"],
        "name": src["name"],
        "connector": "postgresql",
        "topics": ["public.orders"],
    }
    assert out["destination"] == {"id": dst["id"], "name": dst["name"], "connector": "postgresql"}
    assert out["snapshot_new_tables"] is False
    assert out["tags"] == []
    assert out["created_from"] == "api"


def test_topics_may_be_named_by_topic_id(api: httpx.Client) -> None:
    src = create_source(api)
    body = pipeline_body(src, create_destination(api))
    body["source"]["topics"] = [src["topic_ids"][1]]
    r = api.post("/pipelines", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["source"]["topics"] == [src["topic_ids"][1]]


def test_unknown_source_is_422_naming_it(api: httpx.Client) -> None:
    body = pipeline_body(create_source(api), create_destination(api))
    missing = secrets.token_hex(12)
    body["source"]["id"] = missing
    r = api.post("/pipelines", json=body)
    assert r.status_code == 422
    assert "source" in r.json()["detail"] and missing in r.json()["detail"]


def test_unknown_destination_is_422_naming_it(api: httpx.Client) -> None:
    body = pipeline_body(create_source(api), create_destination(api))
    body["destination"]["id"] = "not-a-destination"
    r = api.post("/pipelines", json=body)
    assert r.status_code == 422
    assert "destination" in r.json()["detail"] and "not-a-destination" in r.json()["detail"]


def test_topics_the_source_does_not_capture_are_422(api: httpx.Client) -> None:
    body = pipeline_body(create_source(api), create_destination(api))
    body["source"]["topics"] = ["public.orders", "public.ghosts", "audit.log"]
    r = api.post("/pipelines", json=body)
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert "public.ghosts" in detail and "audit.log" in detail


def test_unknown_transform_is_422(api: httpx.Client) -> None:
    missing = secrets.token_hex(12)
    body = pipeline_body(
        create_source(api), create_destination(api), transforms=[{"id": missing, "name": "t"}]
    )
    r = api.post("/pipelines", json=body)
    assert r.status_code == 422
    assert missing in r.json()["detail"]


@pytest.mark.parametrize("kind", ["rollup", "sql_join"])
def test_a_transform_this_release_cannot_run_is_422(
    server: Server, api: httpx.Client, kind: str
) -> None:
    tx = _transform(server, kind)
    body = pipeline_body(create_source(api), create_destination(api), transforms=[tx])
    r = api.post("/pipelines", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "not_implemented"
    assert kind in r.json()["detail"] and "runnable types" in r.json()["detail"]


def test_unknown_tag_is_422(api: httpx.Client) -> None:
    missing = secrets.token_hex(12)
    body = pipeline_body(create_source(api), create_destination(api), tags=[missing])
    r = api.post("/pipelines", json=body)
    assert r.status_code == 422
    assert missing in r.json()["detail"]


def test_duplicate_name_is_422_already_exists(api: httpx.Client) -> None:
    src, dst = create_source(api), create_destination(api)
    pipe = create_pipeline(api, src, dst)
    r = api.post("/pipelines", json=pipeline_body(src, dst, name=pipe["name"]))
    assert r.status_code == 422
    assert "already exists" in r.json()["detail"]


@pytest.mark.parametrize(
    "change",
    [
        {"name": ""},
        {"name": "n" * 256},
        {"source": None},
        {"source": {"topics": []}},
        {"destination": "abc"},
        {"snapshot_new_tables": "sometimes"},
        {"transforms": [{"name": "no id"}]},
        {"transforms": {"id": "x"}},
        {"tags": [1, 2]},
        {"created_from": "cli"},
    ],
    ids=[
        "empty-name",
        "long-name",
        "source-null",
        "source-without-id",
        "destination-string",
        "snapshot-flag-text",
        "transform-without-id",
        "transforms-object",
        "tags-numbers",
        "created-from-unknown",
    ],
)
def test_bad_body_shape_is_422(api: httpx.Client, change: dict[str, Any]) -> None:
    body = {**pipeline_body(create_source(api), create_destination(api)), **change}
    r = api.post("/pipelines", json=body)
    assert r.status_code == 422, r.text


def test_put_replaces_the_pipeline(api: httpx.Client) -> None:
    src, dst = create_source(api), create_destination(api)
    pipe = create_pipeline(api, src, dst, tags=[DEVELOPMENT_TAG])
    other_dst = create_destination(api)
    body = pipeline_body(src, other_dst, name=unique("pipe-renamed"), snapshot_new_tables=False)
    body["source"]["topics"] = ["public.customers"]
    r = api.put(f"/pipelines/{pipe['id']}", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == pipe["id"]
    for key in ("name", "snapshot_new_tables", "source", "destination", "transforms"):
        assert out[key] == body[key], key
    assert out["tags"] == [DEVELOPMENT_TAG], "tags left out of a PUT are kept"
    # The old destination is free now.
    assert api.delete(f"/destinations/{dst['id']}").status_code == 200


def test_put_unknown_id_is_404(api: httpx.Client) -> None:
    body = pipeline_body(create_source(api), create_destination(api))
    assert api.put(f"/pipelines/{secrets.token_hex(12)}", json=body).status_code == 404


@pytest.mark.parametrize(
    ("action", "state"),
    [("pause", "Paused"), ("stop", "Stopped"), ("resume", "Active"), ("start", "Active")],
)
def test_lifecycle_actions_set_desired_state(api: httpx.Client, action: str, state: str) -> None:
    pipe = create_pipeline(api, create_source(api), create_destination(api))
    if state == "Active":
        api.post(f"/pipelines/{pipe['id']}/pause").raise_for_status()
    r = api.post(f"/pipelines/{pipe['id']}/{action}")
    assert r.status_code == 200, r.text
    assert r.json()["desired_state"] == state
    assert api.get(f"/pipelines/{pipe['id']}").json()["result"][0]["desired_state"] == state


@pytest.mark.parametrize("action", ["pause", "resume", "stop", "start"])
def test_lifecycle_action_on_unknown_id_is_404(api: httpx.Client, action: str) -> None:
    assert api.post(f"/pipelines/{secrets.token_hex(12)}/{action}").status_code == 404


def test_connector_status_comes_from_the_runtime_report(server: Server, api: httpx.Client) -> None:
    pipe = create_pipeline(api, create_source(api), create_destination(api))
    with metadata_session(server) as s:
        s.add(UnitStatus(unit=f"pipeline:{pipe['id']}", status="Starting"))
    got = api.get(f"/pipelines/{pipe['id']}").json()["result"][0]
    assert got["connector_status"] == "Starting"


def test_delete_stops_and_returns_the_deleted_object(api: httpx.Client) -> None:
    src = create_source(api)
    pipe = create_pipeline(api, src, create_destination(api))
    r = api.delete(f"/pipelines/{pipe['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["id"] == pipe["id"]
    assert r.json()["desired_state"] == "Stopped"
    assert api.get(f"/pipelines/{pipe['id']}").json()["result"] == []
    assert api.delete(f"/pipelines/{pipe['id']}").status_code == 404
    assert api.delete(f"/sources/{src['id']}").status_code == 200


def test_get_unknown_id_is_an_empty_result(api: httpx.Client) -> None:
    r = api.get(f"/pipelines/{secrets.token_hex(12)}")
    assert r.status_code == 200
    assert r.json() == {"result": [], "page": 1, "page_size": 10, "total": 0, "has_next": False}


def test_list_envelope_pagination_and_sort(api: httpx.Client) -> None:
    src, dst = create_source(api), create_destination(api)
    prefix = unique("ppage")
    made = [create_pipeline(api, src, dst, name=f"{prefix}-{c}") for c in ("b", "a", "c")]
    q = {"partial_name": prefix, "page_size": 2}
    first = api.get("/pipelines", params={**q, "sort": "name"}).json()
    assert [p["name"] for p in first["result"]] == [f"{prefix}-a", f"{prefix}-b"]
    assert (first["total"], first["has_next"]) == (3, True)
    newest = api.get(
        "/pipelines", params={**q, "sort": "created_at", "sort_dir": "desc", "page": 2}
    ).json()
    assert [p["id"] for p in newest["result"]] == [made[0]["id"]]
    assert newest["has_next"] is False


def test_viewer_may_read_but_not_write(server: Server, api: httpx.Client) -> None:
    src, dst = create_source(api), create_destination(api)
    pipe = create_pipeline(api, src, dst)
    with viewer_client(server, api) as viewer:
        assert viewer.get("/pipelines").status_code == 200
        assert viewer.get(f"/pipelines/{pipe['id']}").status_code == 200
        assert viewer.post("/pipelines", json=pipeline_body(src, dst)).status_code == 403
        assert (
            viewer.put(f"/pipelines/{pipe['id']}", json=pipeline_body(src, dst)).status_code == 403
        )
        assert viewer.post(f"/pipelines/{pipe['id']}/stop").status_code == 403
        assert viewer.delete(f"/pipelines/{pipe['id']}").status_code == 403


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/pipelines"), ("POST", "/pipelines"), ("POST", "/pipelines/x/pause")],
)
def test_no_token_is_401(server: Server, method: str, path: str) -> None:
    assert httpx.request(method, server.url + path, json={}).status_code == 401
