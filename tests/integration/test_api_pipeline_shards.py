"""Platform API: the ``cluster.shards`` pipeline setting (docs/cluster.md#sharded-pipelines)
against a live server, SQLite and Postgres metadata: accepted and echoed for destinations that
allow several writers, a 422 with a stable code for the others and for bad values, on create
and on update."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.platform_helpers import (
    create_destination,
    create_source,
    pipeline_body,
)

KAFKA = {"connector": "kafka", "config": {"kafka.sink.bootstrap": "127.0.0.1:9092"}}


def _body(source: dict[str, Any], dest: dict[str, Any], shards: Any) -> dict[str, Any]:
    body = pipeline_body(source, dest, snapshot_new_tables=False)
    body["destination"] |= {"cluster.shards": shards, "x.client.note": "kept"}
    return body


def test_a_shardable_destination_accepts_shards_and_echoes_them(api: httpx.Client) -> None:
    r = api.post("/pipelines", json=_body(create_source(api), create_destination(api), 3))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["destination"]["cluster.shards"] == 3
    assert out["destination"]["x.client.note"] == "kept"  # unknown keys still pass through
    assert out["worker_ids"] == []  # no worker holds a shard (no cluster here)


def test_a_destination_needing_one_writer_refuses_shards(api: httpx.Client) -> None:
    source, kafka = create_source(api), create_destination(api, **KAFKA)
    r = api.post("/pipelines", json=_body(source, kafka, 2))
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "shards_not_supported"
    assert "single writer" in r.json()["detail"]
    ok = api.post("/pipelines", json=_body(source, kafka, 1))
    assert ok.status_code == 200, ok.text
    r = api.put(f"/pipelines/{ok.json()['id']}", json=_body(source, kafka, 4))
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "shards_not_supported"
    assert (
        api.get(f"/pipelines/{ok.json()['id']}").json()["result"][0]["destination"][
            "cluster.shards"
        ]
        == 1
    )  # nothing half-written


@pytest.mark.parametrize("value", [0, 33, "lots", True, 1.5], ids=str)
def test_a_bad_shard_count_is_422(api: httpx.Client, value: Any) -> None:
    r = api.post("/pipelines", json=_body(create_source(api), create_destination(api), value))
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "shards_not_supported" and "from 1 to 32" in r.json()["detail"]
