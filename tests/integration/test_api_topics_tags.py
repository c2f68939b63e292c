"""Platform API: /topics and /tags on a live server."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.platform_helpers import (
    create_destination,
    create_pipeline,
    create_source,
    pg_source_config,
    unique,
    viewer_client,
)
from tests.support.server import Server

DEVELOPMENT_TAG = "670e5ca40afe1d3983ce0c22"


def create_tag(api: httpx.Client, **body: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"name": unique("tag"), "description": "d", "type": ["sources"]}
    payload.update(body)
    r = api.post("/tags", json=payload)
    assert r.status_code == 200, r.text
    return dict(r.json())


def tags(api: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    r = api.get("/tags", params=params)
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"tags"}
    return list(r.json()["tags"])


def test_get_topic(api: httpx.Client) -> None:
    src = create_source(api)
    topic_id = f"source_{src['id']}.public.orders"
    assert topic_id in src["topic_ids"]
    r = api.get(f"/topics/{topic_id}")
    assert r.status_code == 200, r.text
    t = r.json()
    assert t["topic_id"] == t["id"] == topic_id
    assert t["name"] == "public.orders"
    assert t["partition_count"] == 1
    assert t["kafka"] == {"partitions": {"count": 1}}
    entity = t["entity"]
    assert entity["entity_type"] == "sources"
    assert entity["entity_id"] == src["id"]
    assert entity["name"] == src["name"]
    assert entity["connector"] == "postgresql"
    assert sorted(entity["topic_ids"]) == sorted(src["topic_ids"])


def test_unknown_topic_is_404(api: httpx.Client) -> None:
    r = api.get("/topics/source_000000000000000000000000.public.nope")
    assert r.status_code == 404
    assert "no topic" in r.json()["detail"]
    r = api.put("/topics/source_x.y.z", json={"payload": {"partition_count": 2}})
    assert r.status_code == 404


def test_partition_count_grows_but_never_shrinks(api: httpx.Client) -> None:
    src = create_source(api)
    topic_id = src["topic_ids"][0]
    r = api.put(f"/topics/{topic_id}", json={"payload": {"partition_count": 4}})
    assert r.status_code == 200, r.text
    assert r.json()["partition_count"] == 4
    assert r.json()["kafka"]["partitions"]["count"] == 4
    assert api.get(f"/topics/{topic_id}").json()["partition_count"] == 4
    r = api.put(f"/topics/{topic_id}", json={"payload": {"partition_count": 2}})
    assert r.status_code == 422
    assert "cannot shrink" in r.json()["detail"]
    for bad in (
        {"payload": {"partition_count": 0}},
        {"payload": {}},
        {},
        {"payload": {"partition_count": "x"}},
    ):
        assert api.put(f"/topics/{topic_id}", json=bad).status_code == 422, bad
    assert api.get(f"/topics/{topic_id}").json()["partition_count"] == 4


def test_topic_tags(api: httpx.Client) -> None:
    src = create_source(api)
    topic_id = src["topic_ids"][0]
    r = api.put(f"/topics/{topic_id}", json={"payload": {"tags": [DEVELOPMENT_TAG]}})
    assert r.status_code == 200, r.text
    assert r.json()["tags"] == [DEVELOPMENT_TAG]
    assert r.json()["partition_count"] == 1
    r = api.put(f"/topics/{topic_id}", json={"payload": {"tags": ["0" * 24]}})
    assert r.status_code == 422


def test_topic_details_by_entity(api: httpx.Client) -> None:
    src = create_source(api)
    other = create_source(
        api, config=pg_source_config(**{"table.include.list.user.defined": "sales.invoices"})
    )
    dst = create_destination(api)
    pipe = create_pipeline(api, src, dst)

    r = api.get("/topics/details", params={"entity_type": "sources", "entity_id": src["id"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"result", "page", "page_size", "total", "has_next"}
    assert sorted(t["id"] for t in body["result"]) == sorted(src["topic_ids"])

    both = api.get(
        "/topics/details",
        params=[("entity_type", "sources"), ("entity_id", src["id"]), ("entity_id", other["id"])],
    ).json()
    assert both["total"] == 3

    by_pipeline = api.get(
        "/topics/details", params={"entity_type": "pipelines", "entity_id": pipe["id"]}
    ).json()
    assert sorted(t["id"] for t in by_pipeline["result"]) == sorted(src["topic_ids"])
    by_destination = api.get(
        "/topics/details", params={"entity_type": "destinations", "entity_id": dst["id"]}
    ).json()
    assert by_destination["total"] == len(src["topic_ids"])

    paged = api.get(
        "/topics/details",
        params={"entity_type": "sources", "entity_id": src["id"], "page_size": 1, "page": 2},
    ).json()
    assert paged["total"] == 2 and len(paged["result"]) == 1 and paged["has_next"] is False

    none = api.get("/topics/details", params={"entity_type": "sources", "entity_id": "nope"})
    assert none.json()["result"] == []
    bad = api.get("/topics/details", params={"entity_type": "galaxies"})
    assert bad.status_code == 422


def test_topic_details_of_a_transform(api: httpx.Client) -> None:
    src = create_source(api)
    r = api.post(
        "/transforms",
        json={
            "transform": "map_filter",
            "config": {
                "transforms.name": unique("tr"),
                "transforms.input.topic.pattern": f"source_{src['id']}\\..*\\.customers",
            },
        },
    )
    assert r.status_code == 200, r.text
    got = api.get(
        "/topics/details", params={"entity_type": "transforms", "entity_id": r.json()["id"]}
    ).json()
    assert [t["name"] for t in got["result"]] == ["public.customers"]


def test_builtin_development_tag(api: httpx.Client) -> None:
    found = tags(api, tag_ids=DEVELOPMENT_TAG)
    assert len(found) == 1
    dev = found[0]
    assert set(dev) == {"id", "name", "description", "type", "system", "custom"}
    assert dev["name"] == "Development" and dev["system"] is True and dev["custom"] is False
    assert api.delete(f"/tags/{DEVELOPMENT_TAG}").status_code == 409
    r = api.put(f"/tags/{DEVELOPMENT_TAG}", json={"name": "Dev2"})
    assert r.status_code == 409
    assert tags(api, tag_ids=DEVELOPMENT_TAG)[0]["name"] == "Development"


def test_create_and_filter_tags(api: httpx.Client) -> None:
    a = create_tag(api, type=["sources", "pipelines"], description="first")
    b = create_tag(api, type=["destinations"])
    assert a["system"] is False and a["custom"] is True
    assert a["type"] == ["sources", "pipelines"] and a["description"] == "first"
    assert {t["id"] for t in tags(api, tag_ids=f"{a['id']},{b['id']}")} == {a["id"], b["id"]}
    repeated = api.get("/tags", params=[("tag_ids", a["id"]), ("tag_ids", b["id"])]).json()
    assert {t["id"] for t in repeated["tags"]} == {a["id"], b["id"]}
    assert [t["id"] for t in tags(api, tag_name=a["name"])] == [a["id"]]
    assert [t["id"] for t in tags(api, tag_name=a["name"].upper())] == [a["id"]]
    typed = {t["id"] for t in tags(api, tag_type="pipelines")}
    assert a["id"] in typed and b["id"] not in typed
    assert tags(api, tag_ids="0" * 24) == []


@pytest.mark.parametrize(
    "body",
    [{"name": ""}, {"name": "x", "type": ["galaxies"]}, {"description": "no name"}, {"name": "  "}],
    ids=["empty-name", "unknown-type", "missing-name", "blank-name"],
)
def test_invalid_tag_is_422(api: httpx.Client, body: dict[str, Any]) -> None:
    assert api.post("/tags", json=body).status_code == 422


def test_duplicate_tag_name_is_422(api: httpx.Client) -> None:
    a = create_tag(api)
    r = api.post("/tags", json={"name": a["name"], "type": []})
    assert r.status_code == 422 and "already exists" in r.json()["detail"]
    b = create_tag(api)
    r = api.put(f"/tags/{b['id']}", json={"name": a["name"]})
    assert r.status_code == 422 and "already exists" in r.json()["detail"]


def test_update_and_delete_tag(api: httpx.Client) -> None:
    t = create_tag(api)
    new_name = unique("renamed")
    r = api.put(
        f"/tags/{t['id']}", json={"name": new_name, "type": ["pipelines"], "description": "x"}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {**t, "name": new_name, "type": ["pipelines"], "description": "x"}
    r = api.delete(f"/tags/{t['id']}")
    assert r.status_code == 200 and r.json()["id"] == t["id"]
    assert tags(api, tag_ids=t["id"]) == []
    assert api.delete(f"/tags/{t['id']}").status_code == 404
    assert api.put(f"/tags/{t['id']}", json={"name": "x"}).status_code == 404


def test_tag_in_use_cannot_be_deleted(api: httpx.Client) -> None:
    t = create_tag(api)
    src = create_source(api, tags=[t["id"]])
    r = api.delete(f"/tags/{t['id']}")
    assert r.status_code == 409
    assert src["id"] in r.json()["detail"]
    assert api.delete(f"/sources/{src['id']}").status_code == 200
    assert api.delete(f"/tags/{t['id']}").status_code == 200


def test_viewer_cannot_change_tags_or_topics(server: Server, api: httpx.Client) -> None:
    t = create_tag(api)
    src = create_source(api)
    with viewer_client(server, api) as viewer:
        assert viewer.get("/tags").status_code == 200
        assert viewer.get(f"/topics/{src['topic_ids'][0]}").status_code == 200
        assert viewer.post("/tags", json={"name": unique("t")}).status_code == 403
        assert viewer.put(f"/tags/{t['id']}", json={"name": "x"}).status_code == 403
        assert viewer.delete(f"/tags/{t['id']}").status_code == 403
        r = viewer.put(f"/topics/{src['topic_ids'][0]}", json={"payload": {"partition_count": 9}})
        assert r.status_code == 403
