"""Platform API: /sources against a live server (SQLite and Postgres metadata)."""

from __future__ import annotations

import importlib.util
import re
import secrets
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.integration.platform_helpers import (
    SOURCE_PASSWORD,
    create_destination,
    create_pipeline,
    create_source,
    metadata_bytes,
    metadata_session,
    pg_source_config,
    unique,
    viewer_client,
)
from tests.support.server import Server
from tideflow.store.models.resources import Topic
from tideflow.store.models.runtime import UnitStatus

DEVELOPMENT_TAG = "670e5ca40afe1d3983ce0c22"
OBJECT_ID = re.compile(r"[0-9a-f]{24}")


def test_create_returns_the_bare_object(api: httpx.Client) -> None:
    name = unique("src")
    r = api.post(
        "/sources",
        json={"name": name, "connector": "postgresql", "config": pg_source_config()},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert "result" not in body
    assert OBJECT_ID.fullmatch(body["id"])
    assert body["name"] == name
    assert body["connector"] == "postgresql"
    assert body["desired_state"] == "Active"
    assert body["connector_status"] == "Unassigned"  # no worker has reported on it
    assert body["created_from"] == "api"
    assert body["tags"] == []
    assert datetime.fromisoformat(body["created_timestamp"]).tzinfo is not None


@pytest.mark.parametrize("created_from", ["terraform", "web", "api"])
def test_created_from_is_stored(api: httpx.Client, created_from: str) -> None:
    src = create_source(api, created_from=created_from)
    assert src["created_from"] == created_from
    got = api.get(f"/sources/{src['id']}").json()["result"][0]
    assert got["created_from"] == created_from


def test_config_is_stored_verbatim_with_json_types(api: httpx.Client) -> None:
    config = pg_source_config(
        **{
            "database.port.user.defined": "5433",  # a string stays a string
            "heartbeat.enabled": False,
            "snapshot.read.only.user.defined": "No",
            "custom.ratio": 0.25,
            "custom.count": 7,
            "custom.nested": {"a": [1, "two", None, True]},
            "zz.unknown.key": "kept",
        }
    )
    reveal = {"secret_returned": "true"}
    r = api.post(
        "/sources",
        params=reveal,
        json={"name": unique("src"), "connector": "postgresql", "config": config},
    )
    assert r.status_code == 200, r.text
    got = api.get(f"/sources/{r.json()['id']}", params=reveal).json()["result"][0]
    for shown in (r.json()["config"], got["config"]):
        assert shown == config
        assert list(shown) == list(config), "key order and key set are kept; no defaults added"
        assert isinstance(shown["database.port.user.defined"], str)
        assert isinstance(shown["custom.count"], int)
        assert shown["heartbeat.enabled"] is False


def test_secret_is_masked_by_default(api: httpx.Client) -> None:
    src = create_source(api)
    assert src["config"]["database.password"] == "********"
    listed = api.get("/sources", params={"partial_name": src["name"]}).json()["result"]
    assert listed[0]["config"]["database.password"] == "********"
    got = api.get(f"/sources/{src['id']}").json()["result"][0]
    assert got["config"]["database.password"] == "********"
    assert SOURCE_PASSWORD not in api.get(f"/sources/{src['id']}").text


def test_secret_is_revealed_to_admin_on_request(api: httpx.Client) -> None:
    src = create_source(api)
    r = api.get(f"/sources/{src['id']}", params={"secret_returned": "true"})
    assert r.json()["result"][0]["config"]["database.password"] == SOURCE_PASSWORD
    r = api.post(
        "/sources",
        params={"secret_returned": "true"},
        json={"name": unique("src"), "connector": "postgresql", "config": pg_source_config()},
    )
    assert r.json()["config"]["database.password"] == SOURCE_PASSWORD


def test_viewer_never_sees_secrets(server: Server, api: httpx.Client) -> None:
    src = create_source(api)
    with viewer_client(server, api) as viewer:
        r = viewer.get(f"/sources/{src['id']}", params={"secret_returned": "true"})
        assert r.status_code == 200, r.text
        assert r.json()["result"][0]["config"]["database.password"] == "********"
        listed = viewer.get("/sources", params={"secret_returned": "true", "page_size": 100})
        assert SOURCE_PASSWORD not in listed.text


def test_secret_is_not_stored_in_plain_text(server: Server, api: httpx.Client) -> None:
    marker = "plain-" + secrets.token_hex(8)
    src = create_source(api, config=pg_source_config(**{"database.password": marker}))
    raw = metadata_bytes(server)
    assert src["name"].encode() in raw, "the check reads the store the server writes to"
    assert marker.encode() not in raw


def test_put_with_masked_secret_keeps_the_stored_secret(api: httpx.Client) -> None:
    src = create_source(api)
    config = dict(src["config"])  # as read without secret_returned: password masked
    config["database.dbname"] = "shop2"
    r = api.put(
        f"/sources/{src['id']}",
        json={"name": src["name"], "connector": "postgresql", "config": config},
    )
    assert r.status_code == 200, r.text
    got = api.get(f"/sources/{src['id']}", params={"secret_returned": "true"}).json()["result"][0]
    assert got["config"]["database.password"] == SOURCE_PASSWORD
    assert got["config"]["database.dbname"] == "shop2"


def test_put_replaces_name_config_and_tags(api: httpx.Client) -> None:
    src = create_source(api, tags=[DEVELOPMENT_TAG])
    new_name = unique("renamed")
    new_config = pg_source_config(**{"database.password": "new-pass", "slot.name": "s2"})
    r = api.put(
        f"/sources/{src['id']}",
        json={"name": new_name, "connector": "postgresql", "config": new_config, "tags": []},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert "result" not in body
    assert body["id"] == src["id"]
    assert body["name"] == new_name
    assert body["tags"] == []
    got = api.get(f"/sources/{src['id']}", params={"secret_returned": "true"}).json()["result"][0]
    assert got["config"] == new_config


def test_put_without_tags_keeps_them(api: httpx.Client) -> None:
    src = create_source(api, tags=[DEVELOPMENT_TAG])
    r = api.put(
        f"/sources/{src['id']}",
        json={"name": src["name"], "connector": "postgresql", "config": pg_source_config()},
    )
    assert r.json()["tags"] == [DEVELOPMENT_TAG]


def test_put_unknown_id_is_404(api: httpx.Client) -> None:
    r = api.put(
        f"/sources/{secrets.token_hex(12)}",
        json={"name": unique("src"), "connector": "postgresql", "config": pg_source_config()},
    )
    assert r.status_code == 404, r.text


def test_put_cannot_change_the_connector(api: httpx.Client) -> None:
    src = create_source(api)
    r = api.put(
        f"/sources/{src['id']}",
        json={"name": src["name"], "connector": "mysql", "config": pg_source_config()},
    )
    assert r.status_code == 422, r.text


def test_put_validates_like_post(api: httpx.Client) -> None:
    src = create_source(api)
    config = pg_source_config()
    del config["database.dbname"]
    r = api.put(
        f"/sources/{src['id']}",
        json={"name": src["name"], "connector": "postgresql", "config": config},
    )
    assert r.status_code == 422
    assert "database.dbname" in r.json()["detail"]


def test_duplicate_name_is_422_already_exists(api: httpx.Client) -> None:
    src = create_source(api)
    r = api.post(
        "/sources",
        json={"name": src["name"], "connector": "postgresql", "config": pg_source_config()},
    )
    assert r.status_code == 422
    assert "already exists" in r.json()["detail"]
    other = create_source(api)
    r = api.put(
        f"/sources/{other['id']}",
        json={"name": src["name"], "connector": "postgresql", "config": pg_source_config()},
    )
    assert r.status_code == 422
    assert "already exists" in r.json()["detail"]


@pytest.mark.parametrize(
    "key", ["database.hostname.user.defined", "database.password", "database.dbname"]
)
def test_missing_required_key_is_422_naming_it(api: httpx.Client, key: str) -> None:
    config = pg_source_config()
    del config[key]
    r = api.post(
        "/sources", json={"name": unique("src"), "connector": "postgresql", "config": config}
    )
    assert r.status_code == 422
    assert key in r.json()["detail"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("database.port.user.defined", "not-a-port"),
        ("database.port.user.defined", [5432]),
        ("database.sslmode", "sometimes"),
        ("heartbeat.enabled", {"on": True}),
        ("database.password", 12345),
    ],
    ids=["port-text", "port-list", "sslmode-unknown", "heartbeat-object", "password-number"],
)
def test_wrong_type_is_422_naming_the_key(api: httpx.Client, key: str, value: Any) -> None:
    config = pg_source_config(**{key: value})
    r = api.post(
        "/sources", json={"name": unique("src"), "connector": "postgresql", "config": config}
    )
    assert r.status_code == 422, r.text
    assert key in r.json()["detail"]


def test_unknown_connector_is_422(api: httpx.Client) -> None:
    r = api.post(
        "/sources",
        json={"name": unique("src"), "connector": "oracle-9i", "config": pg_source_config()},
    )
    assert r.status_code == 422
    assert "oracle-9i" in r.json()["detail"]


def test_unknown_tag_is_422(api: httpx.Client) -> None:
    missing = secrets.token_hex(12)
    r = api.post(
        "/sources",
        json={
            "name": unique("src"),
            "connector": "postgresql",
            "config": pg_source_config(),
            "tags": [DEVELOPMENT_TAG, missing],
        },
    )
    assert r.status_code == 422
    assert missing in r.json()["detail"]


def test_development_tag_is_built_in(api: httpx.Client) -> None:
    src = create_source(api, tags=[DEVELOPMENT_TAG])
    assert src["tags"] == [DEVELOPMENT_TAG]


@pytest.mark.parametrize(
    "body",
    [
        {"connector": "postgresql", "config": {}},
        {"name": "", "connector": "postgresql", "config": {}},
        {"name": "x" * 256, "connector": "postgresql", "config": {}},
        {"name": 42, "connector": "postgresql", "config": {}},
        {"name": "n", "connector": "postgresql", "config": ["not", "an", "object"]},
        {"name": "n", "connector": "postgresql", "config": None},
        {"name": "n", "connector": "postgresql", "config": {}, "tags": "670e5ca40afe1d3983ce0c22"},
        {"name": "n", "connector": "postgresql", "config": {}, "created_from": "fax"},
        {"name": "nul\x00name", "connector": "postgresql", "config": {}},
        {"name": "n", "connector": "postgresql", "config": {"k": "nul\x00value"}},
        {"name": "n", "connector": ["postgresql"], "config": {}},
        [],
    ],
    ids=[
        "no-name",
        "empty-name",
        "name-too-long",
        "name-number",
        "config-list",
        "config-null",
        "tags-string",
        "created-from-unknown",
        "nul-in-name",
        "nul-in-config",
        "connector-list",
        "body-list",
    ],
)
def test_bad_body_shape_is_422(api: httpx.Client, body: Any) -> None:
    r = api.post("/sources", json=body)
    assert r.status_code == 422, r.text


def test_non_finite_number_in_config_is_422(api: httpx.Client) -> None:
    content = (
        '{"name": "nan-src", "connector": "postgresql", '
        '"config": {"database.hostname.user.defined": "h", "x": NaN}}'
    )
    r = api.post("/sources", content=content, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text


@pytest.mark.parametrize(
    "name", ["ünïcødé Quelle", "源数据库 🚀", "a", "x" * 255, "  spaced  ", "quote'\"; drop"]
)
def test_unusual_names_round_trip(api: httpx.Client, name: str) -> None:
    src = create_source(api, name=name)
    assert src["name"] == name
    got = api.get(f"/sources/{src['id']}").json()["result"][0]
    assert got["name"] == name


@pytest.mark.parametrize("source_id", [secrets.token_hex(12), "not-an-id", "0" * 24])
def test_get_unknown_id_is_an_empty_result(api: httpx.Client, source_id: str) -> None:
    r = api.get(f"/sources/{source_id}")
    assert r.status_code == 200
    assert r.json() == {"result": [], "page": 1, "page_size": 10, "total": 0, "has_next": False}


def test_get_by_id_is_a_list_envelope(api: httpx.Client) -> None:
    src = create_source(api)
    body = api.get(f"/sources/{src['id']}").json()
    assert body["total"] == 1
    assert body["has_next"] is False
    assert [s["id"] for s in body["result"]] == [src["id"]]


def test_list_envelope_pagination_sort_and_partial_name(api: httpx.Client) -> None:
    prefix = unique("page")
    made = [create_source(api, name=f"{prefix}-{c}") for c in ("b", "a", "c")]
    q = {"partial_name": prefix.upper()}  # partial_name is case-insensitive

    first = api.get("/sources", params={**q, "page_size": 2, "sort": "name"}).json()
    assert set(first) == {"result", "page", "page_size", "total", "has_next"}
    assert (first["page"], first["page_size"], first["total"], first["has_next"]) == (1, 2, 3, True)
    assert [s["name"] for s in first["result"]] == [f"{prefix}-a", f"{prefix}-b"]
    second = api.get("/sources", params={**q, "page_size": 2, "page": 2, "sort": "name"}).json()
    assert [s["name"] for s in second["result"]] == [f"{prefix}-c"]
    assert second["has_next"] is False

    desc = api.get("/sources", params={**q, "sort": "name", "sort_dir": "desc"}).json()
    assert [s["name"] for s in desc["result"]] == [f"{prefix}-c", f"{prefix}-b", f"{prefix}-a"]
    newest = api.get("/sources", params={**q, "sort": "created_at", "sort_dir": "desc"}).json()
    assert [s["id"] for s in newest["result"]] == [s["id"] for s in reversed(made)]
    oldest = api.get("/sources", params={**q, "sort": "created_at"}).json()
    assert [s["id"] for s in oldest["result"]] == [s["id"] for s in made]

    beyond = api.get("/sources", params={**q, "page": 1000}).json()
    assert beyond["result"] == [] and beyond["total"] == 3 and beyond["has_next"] is False


@pytest.mark.parametrize(
    "params",
    [
        {"page_size": 101},
        {"page_size": 0},
        {"page": 0},
        {"page": 10**12},
        {"sort": "password"},
        {"sort_dir": "sideways"},
        {"secret_returned": "perhaps"},
        {"partial_name": "nul\x00byte"},
    ],
    ids=[
        "page-size-101",
        "page-size-0",
        "page-0",
        "page-huge",
        "sort-unknown",
        "dir",
        "secret",
        "partial-name-nul",
    ],
)
def test_bad_list_parameters_are_422(api: httpx.Client, params: dict[str, Any]) -> None:
    r = api.get("/sources", params=params)
    assert r.status_code == 422, r.text


def test_topics_follow_the_include_list(server: Server, api: httpx.Client) -> None:
    src = create_source(
        api,
        config=pg_source_config(
            **{"table.include.list.user.defined": "public.a, public.b,public.a"}
        ),
    )
    sid = src["id"]
    assert src["topics"] == ["public.a", "public.b"]
    assert src["topic_ids"] == [f"source_{sid}.public.a", f"source_{sid}.public.b"]

    config = pg_source_config(**{"table.include.list.user.defined": "public.b,sales.c"})
    r = api.put(
        f"/sources/{sid}", json={"name": src["name"], "connector": "postgresql", "config": config}
    )
    assert r.json()["topics"] == ["public.b", "sales.c"]
    assert r.json()["topic_ids"] == [f"source_{sid}.public.b", f"source_{sid}.sales.c"]
    with metadata_session(server) as s:
        rows = s.scalars(select(Topic).where(Topic.source_id == sid).order_by(Topic.id)).all()
        assert [(t.id, t.name) for t in rows] == [
            (f"source_{sid}.public.b", "public.b"),
            (f"source_{sid}.sales.c", "sales.c"),
        ]


def test_source_without_include_list_has_no_topics(api: httpx.Client) -> None:
    config = pg_source_config()
    del config["table.include.list.user.defined"]
    src = create_source(api, config=config)
    assert src["topics"] == [] and src["topic_ids"] == []


@pytest.mark.parametrize(
    ("action", "state", "status"),
    [
        ("pause", "Paused", "Paused"),
        ("stop", "Stopped", "Stopped"),
        ("resume", "Active", "Unassigned"),
        ("start", "Active", "Unassigned"),
    ],
)
def test_lifecycle_actions_set_desired_state(
    api: httpx.Client, action: str, state: str, status: str
) -> None:
    src = create_source(api)
    if state == "Active":
        api.post(f"/sources/{src['id']}/stop").raise_for_status()
    r = api.post(f"/sources/{src['id']}/{action}")
    assert r.status_code == 200, r.text
    assert r.json()["desired_state"] == state
    assert r.json()["connector_status"] == status
    got = api.get(f"/sources/{src['id']}").json()["result"][0]
    assert got["desired_state"] == state


@pytest.mark.parametrize("action", ["pause", "resume", "stop", "start"])
def test_lifecycle_action_on_unknown_id_is_404(api: httpx.Client, action: str) -> None:
    r = api.post(f"/sources/{secrets.token_hex(12)}/{action}")
    assert r.status_code == 404


def test_connector_status_comes_from_the_runtime_report(server: Server, api: httpx.Client) -> None:
    src = create_source(api)
    with metadata_session(server) as s:
        s.add(UnitStatus(unit=f"source:{src['id']}", status="Broken", message="auth failed"))
    got = api.get(f"/sources/{src['id']}").json()["result"][0]
    assert got["connector_status"] == "Broken"


def test_delete_returns_the_deleted_object(server: Server, api: httpx.Client) -> None:
    src = create_source(api)
    r = api.delete(f"/sources/{src['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["id"] == src["id"]
    assert r.json()["name"] == src["name"]
    assert api.get(f"/sources/{src['id']}").json()["result"] == []
    with metadata_session(server) as s:
        assert s.scalars(select(Topic).where(Topic.source_id == src["id"])).all() == []
    assert api.delete(f"/sources/{src['id']}").status_code == 404


def test_delete_of_a_used_source_is_409_naming_the_pipeline(api: httpx.Client) -> None:
    src = create_source(api)
    pipe = create_pipeline(api, src, create_destination(api))
    r = api.delete(f"/sources/{src['id']}")
    assert r.status_code == 409
    assert pipe["name"] in r.json()["detail"]
    got = api.get(f"/sources/{src['id']}").json()["result"][0]
    assert got["desired_state"] == "Active", "a refused delete changes nothing"
    api.delete(f"/pipelines/{pipe['id']}").raise_for_status()
    assert api.delete(f"/sources/{src['id']}").status_code == 200


@pytest.mark.skipif(
    importlib.util.find_spec("tideflow.engine.lifecycle") is None,
    reason="this engine has no upstream cleanup",
)
def test_delete_with_an_unreachable_upstream_is_409_unless_forced(api: httpx.Client) -> None:
    unreachable = {"database.hostname.user.defined": "127.0.0.1", "database.port.user.defined": 1}
    src = create_source(api, config=pg_source_config(**unreachable))
    r = api.delete(f"/sources/{src['id']}")
    assert r.status_code == 409, r.text
    assert "force" in r.json()["detail"]
    got = api.get(f"/sources/{src['id']}").json()["result"][0]
    assert got["desired_state"] == "Active", "a refused delete changes nothing"
    r = api.delete(f"/sources/{src['id']}", params={"force": "true"})
    assert r.status_code == 200, r.text
    assert api.get(f"/sources/{src['id']}").json()["result"] == []


def test_viewer_may_read_but_not_write(server: Server, api: httpx.Client) -> None:
    src = create_source(api)
    with viewer_client(server, api) as viewer:
        assert viewer.get("/sources").status_code == 200
        assert viewer.get(f"/sources/{src['id']}").status_code == 200
        body = {"name": unique("src"), "connector": "postgresql", "config": pg_source_config()}
        assert viewer.post("/sources", json=body).status_code == 403
        assert viewer.put(f"/sources/{src['id']}", json=body).status_code == 403
        assert viewer.post(f"/sources/{src['id']}/pause").status_code == 403
        assert viewer.delete(f"/sources/{src['id']}").status_code == 403


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/sources"),
        ("POST", "/sources"),
        ("GET", "/sources/670e5ca40afe1d3983ce0c22"),
        ("PUT", "/sources/670e5ca40afe1d3983ce0c22"),
        ("DELETE", "/sources/670e5ca40afe1d3983ce0c22"),
        ("POST", "/sources/670e5ca40afe1d3983ce0c22/pause"),
    ],
)
def test_no_token_is_401(server: Server, method: str, path: str) -> None:
    r = httpx.request(method, server.url + path, json={})
    assert r.status_code == 401
    assert isinstance(r.json()["detail"], str)
