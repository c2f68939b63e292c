"""Streams API: /api/streams (and /v1/api/streams) on a live server.

The runtime's reports are written straight into the metadata store (as the engine would) to
check how they show as stream statuses.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest

from tests.integration.platform_helpers import (
    create_destination,
    create_pipeline,
    create_source,
    metadata_session,
    unique,
    viewer_client,
)
from tests.support import api as support_api
from tests.support import pg
from tests.support.server import Server, wait_until
from tideflow.connectors.sources.postgres.setup import MARKER
from tideflow.store.models.runtime import UnitStatus

PASSWORD = "stream-Secret-3c1f"
STREAM_ID = re.compile(r"str_[0-9a-z]+")


@pytest.fixture(scope="module")
def pipeline(api: httpx.Client) -> dict[str, Any]:
    return create_pipeline(api, create_source(api), create_destination(api))


@pytest.fixture(scope="module")
def connection(api: httpx.Client) -> dict[str, Any]:
    r = api.post(
        "/api/connections",
        json={
            "name": unique("conn"),
            "kind": "postgres",
            "host": "db.internal",
            "port": 5432,
            "username": "cdc",
            "password": PASSWORD,
            "database": "shop",
        },
    )
    assert r.status_code == 201, r.text
    return dict(r.json()["data"])


def stream_body(pipeline: dict[str, Any], connection: dict[str, Any], **overrides: Any) -> Any:
    body: dict[str, Any] = {
        "name": unique("stream"),
        "sourceType": "postgres_cdc",
        "pipelineId": pipeline["id"],
        "connectionId": connection["id"],
        "config": {
            "publication": "orders_pub",
            "slot_name": "orders_slot",
            "tables": ["public.orders", "public.order_items"],
        },
    }
    body.update(overrides)
    return body


def create_stream(
    api: httpx.Client, pipeline: dict[str, Any], connection: dict[str, Any], **overrides: Any
) -> dict[str, Any]:
    r = api.post("/api/streams", json=stream_body(pipeline, connection, **overrides))
    assert r.status_code == 201, r.text
    return dict(r.json()["data"])


def report(server: Server, source_id: str, status: str, message: str = "") -> None:
    """Write what the runtime would report for the stream's source."""
    with metadata_session(server) as s:
        row = s.get(UnitStatus, f"source:{source_id}")
        if row is None:
            s.add(UnitStatus(unit=f"source:{source_id}", status=status, message=message))
        else:
            row.status, row.message = status, message


def attributes(api: httpx.Client, stream_id: str) -> dict[str, Any]:
    r = api.get(f"/api/streams/{stream_id}")
    assert r.status_code == 200, r.text
    return dict(r.json()["data"]["attributes"])


@pytest.mark.parametrize("prefix", ["/api", "/v1/api"])
def test_create_stream(
    api: httpx.Client, pipeline: dict[str, Any], connection: dict[str, Any], prefix: str
) -> None:
    body = stream_body(pipeline, connection)
    r = api.post(f"{prefix}/streams", json=body)
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    assert STREAM_ID.fullmatch(data["id"]) and data["type"] == "stream"
    attrs = data["attributes"]
    assert attrs["name"] == body["name"]
    assert attrs["source_type"] == "postgres_cdc"
    assert attrs["pipeline_id"] == pipeline["id"]
    assert attrs["connection_id"] == connection["id"]
    assert attrs["status"] == "created"
    assert attrs["config"] == body["config"]
    assert attrs["topics"] == ["public.orders", "public.order_items"]
    assert datetime.fromisoformat(attrs["created_at"]).tzinfo is not None
    assert PASSWORD not in r.text
    assert api.get(f"/v1/api/streams/{data['id']}").json()["data"] == data


def test_a_stream_is_a_source(
    api: httpx.Client, pipeline: dict[str, Any], connection: dict[str, Any]
) -> None:
    stream = create_stream(api, pipeline, connection)
    source_id = stream["attributes"]["source_id"]
    src = api.get(f"/sources/{source_id}", params={"secret_returned": "true"}).json()["result"][0]
    assert src["name"] == stream["attributes"]["name"]
    assert src["connector"] == "postgresql"
    assert src["desired_state"] == "Stopped"
    assert src["config"] == {
        "database.hostname.user.defined": "db.internal",
        "database.port.user.defined": 5432,
        "database.user": "cdc",
        "database.password": PASSWORD,
        "database.dbname": "shop",
        "publication.name": "orders_pub",
        "slot.name": "orders_slot",
        "table.include.list.user.defined": "public.orders,public.order_items",
    }
    assert src["topic_ids"] == [
        f"source_{source_id}.public.orders",
        f"source_{source_id}.public.order_items",
    ]


def test_platform_sources_show_as_streams(api: httpx.Client) -> None:
    src = create_source(api)
    pipe = create_pipeline(api, src, create_destination(api))
    listed = api.get("/api/streams", params={"pipeline_id": pipe["id"]}).json()["data"]
    assert len(listed) == 1
    attrs = listed[0]["attributes"]
    assert attrs["source_id"] == src["id"]
    assert attrs["source_type"] == "postgres_cdc"
    assert attrs["pipeline_id"] == pipe["id"]
    assert attrs["status"] == "starting"  # started at once, nothing reported yet
    assert attrs["config"]["database.password"] == "********"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"sourceType": "sqlserver_cdc"}, "sqlserver_cdc"),
        ({"sourceType": "oracle"}, "oracle"),
        ({"pipelineId": "0" * 24}, "pipelineId"),
        ({"pipelineId": "pl_nope"}, "pipelineId"),
        ({"connectionId": "conn_0000000000000000"}, "connectionId"),
        ({"connectionId": None}, "connectionId"),
        ({"config": {"galaxy": "far"}}, "galaxy"),
        ({"config": {"tables": [1, 2]}}, "tables"),
        ({"config": {"database.sslmode": "sometimes"}}, "database.sslmode"),
        ({"name": ""}, "name"),
    ],
    ids=[
        "unregistered-source-type",
        "unknown-source-type",
        "unknown-pipeline",
        "foreign-pipeline-id",
        "unknown-connection",
        "connection-required",
        "unknown-config-key",
        "tables-not-strings",
        "invalid-connector-value",
        "empty-name",
    ],
)
def test_invalid_stream_is_422(
    api: httpx.Client,
    pipeline: dict[str, Any],
    connection: dict[str, Any],
    overrides: dict[str, Any],
    message: str,
) -> None:
    body = stream_body(pipeline, connection, **overrides)
    r = api.post("/api/streams", json=body)
    assert r.status_code == 422, r.text
    error = r.json()["errors"][0]
    assert error["status"] == "422"
    assert message in str(error["detail"])


def test_missing_fields_are_422(api: httpx.Client, pipeline: dict[str, Any]) -> None:
    for missing in ("name", "sourceType", "pipelineId"):
        body = {"name": unique("s"), "sourceType": "postgres_cdc", "pipelineId": pipeline["id"]}
        del body[missing]
        r = api.post("/api/streams", json=body)
        assert r.status_code == 422, missing
        assert missing in str(r.json()["errors"][0]["detail"])


def test_connection_kind_must_fit(api: httpx.Client, pipeline: dict[str, Any]) -> None:
    r = api.post(
        "/api/connections",
        json={"name": unique("conn"), "kind": "mysql", "host": "m", "password": "x"},
    )
    mysql = r.json()["data"]
    r = api.post("/api/streams", json=stream_body(pipeline, mysql))
    assert r.status_code == 422
    assert "mysql connection" in r.json()["errors"][0]["detail"]


def test_missing_connector_key_points_at_the_connection(
    api: httpx.Client, pipeline: dict[str, Any]
) -> None:
    r = api.post(
        "/api/connections",
        json={"name": unique("conn"), "kind": "postgres", "host": "h", "username": "u"},
    )
    partial = r.json()["data"]
    r = api.post("/api/streams", json=stream_body(pipeline, partial))
    assert r.status_code == 422
    detail = r.json()["errors"][0]["detail"]
    assert "database.dbname" in detail and "connection.database" in detail


def test_duplicate_name_is_422(
    api: httpx.Client, pipeline: dict[str, Any], connection: dict[str, Any]
) -> None:
    stream = create_stream(api, pipeline, connection)
    r = api.post(
        "/api/streams", json=stream_body(pipeline, connection, name=stream["attributes"]["name"])
    )
    assert r.status_code == 422
    assert "already exists" in r.json()["errors"][0]["detail"]


def test_unknown_stream_is_404(api: httpx.Client) -> None:
    for path in ("/api/streams/str_0000000000000000", "/v1/api/streams/nope"):
        r = api.get(path)
        assert r.status_code == 404
        assert r.json()["errors"][0]["code"] == "not_found"
    assert api.post("/api/streams/str_0000000000000000/start").status_code == 404
    assert api.delete("/api/streams/str_0000000000000000").status_code == 404
    assert api.get("/api/streams/str_0000000000000000/metrics").status_code == 404


def test_lifecycle_actions(
    server: Server, api: httpx.Client, pipeline: dict[str, Any], connection: dict[str, Any]
) -> None:
    stream = create_stream(api, pipeline, connection)
    sid, source_id = stream["id"], stream["attributes"]["source_id"]

    assert api.post(f"/api/streams/{sid}/pause").status_code == 409
    assert api.post(f"/api/streams/{sid}/resume").status_code == 409
    assert attributes(api, sid)["status"] == "created"

    expected = {"start": "starting", "pause": "paused", "resume": "running", "stop": "stopped"}
    desired = {"start": "Active", "pause": "Paused", "resume": "Active", "stop": "Stopped"}
    for action, status in expected.items():
        r = api.post(f"/v1/api/streams/{sid}/{action}")
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert data["id"] == sid and data["type"] == "stream"
        assert data["attributes"]["status"] == status
        assert data["attributes"]["desired_state"] == desired[action]
        src = api.get(f"/sources/{source_id}").json()["result"][0]
        assert src["desired_state"] == desired[action]
    assert attributes(api, sid)["status"] == "stopped"
    assert api.post(f"/api/streams/{sid}/resume").status_code == 409
    assert api.post(f"/api/streams/{sid}/start").status_code == 200


@pytest.mark.parametrize(
    ("reported", "status"),
    [
        ("Starting", "starting"),
        ("Active", "running"),
        ("Paused", "paused"),
        ("Stopped", "stopped"),
        ("Broken", "error"),
        ("Unassigned", "starting"),
    ],
)
def test_status_follows_the_runtime(
    server: Server,
    api: httpx.Client,
    pipeline: dict[str, Any],
    connection: dict[str, Any],
    reported: str,
    status: str,
) -> None:
    stream = create_stream(api, pipeline, connection)
    sid, source_id = stream["id"], stream["attributes"]["source_id"]
    report(server, source_id, reported, "slot orders_slot is gone")
    assert attributes(api, sid)["status"] == "created"  # never started: the report is stale
    assert api.post(f"/api/streams/{sid}/start").status_code == 200
    attrs = attributes(api, sid)
    assert attrs["status"] == status
    # The runtime's message comes with what it reports (not with Unassigned: none reported).
    message = None if reported == "Unassigned" else "slot orders_slot is gone"
    assert attrs["status_message"] == message
    report(server, source_id, reported)
    assert attributes(api, sid)["status_message"] is None
    listed = api.get("/api/streams", params={"status": status, "limit": 500}).json()["data"]
    assert sid in {s["id"] for s in listed}
    metrics = api.get(f"/api/streams/{sid}/metrics").json()["data"]["attributes"]
    assert metrics["status"] == status


def test_list_filters(
    api: httpx.Client, pipeline: dict[str, Any], connection: dict[str, Any]
) -> None:
    other = create_pipeline(api, create_source(api), create_destination(api))
    a = create_stream(api, pipeline, connection)
    b = create_stream(api, other, connection)
    api.post(f"/api/streams/{b['id']}/start")

    def ids(**params: Any) -> set[str]:
        r = api.get("/api/streams", params={"limit": 500, **params})
        assert r.status_code == 200, r.text
        return {s["id"] for s in r.json()["data"]}

    assert {a["id"], b["id"]} <= ids()
    by_pipe = ids(pipeline_id=other["id"])
    assert b["id"] in by_pipe and a["id"] not in by_pipe
    assert len(by_pipe) == 2  # b and the pipeline's own source (fan-in)
    created = ids(status="created")
    assert a["id"] in created and b["id"] not in created
    assert b["id"] in ids(status="starting")
    assert a["id"] in ids(source_type="postgres_cdc")
    assert ids(source_type="kafka").isdisjoint({a["id"], b["id"]})
    assert ids(pipeline_id="pl_unknown") == set()
    assert api.get("/api/streams", params={"status": "sleeping"}).status_code == 422
    assert api.get("/api/streams", params={"limit": 0}).status_code == 422
    assert api.get("/api/streams", params={"limit": 501}).status_code == 422


def test_cursor_pagination(
    api: httpx.Client, pipeline: dict[str, Any], connection: dict[str, Any]
) -> None:
    mine = {create_stream(api, pipeline, connection)["id"] for _ in range(3)}
    r = api.get("/api/streams")
    assert r.json()["meta"]["page"]["limit"] == 50
    seen: list[str] = []
    cursor = None
    for _ in range(200):
        params: dict[str, Any] = {"limit": 2, "pipeline_id": pipeline["id"]}
        if cursor is not None:
            params["cursor"] = cursor
        body = api.get("/v1/api/streams", params=params).json()
        assert len(body["data"]) <= 2
        seen.extend(s["id"] for s in body["data"])
        cursor = body["meta"]["page"]["next_cursor"]
        assert body["meta"]["page"]["has_more"] is (cursor is not None)
        if cursor is None:
            break
    assert mine <= set(seen)
    assert len(seen) == len(set(seen))
    r = api.get("/api/streams", params={"cursor": "garbage!"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["status"] == "422"


def test_summary(
    server: Server, api: httpx.Client, pipeline: dict[str, Any], connection: dict[str, Any]
) -> None:
    def counts() -> dict[str, Any]:
        r = api.get("/api/streams/summary")
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert data["type"] == "streams_summary"
        return dict(data["attributes"])

    before = counts()
    assert set(before["by_status"]) == {
        "created",
        "starting",
        "running",
        "paused",
        "stopped",
        "error",
    }
    assert before["total"] == sum(before["by_status"].values())
    assert before["approx_events_per_minute"] == 0
    assert before["metrics_available"] is False
    assert datetime.fromisoformat(before["computed_at"]).tzinfo is not None

    created = create_stream(api, pipeline, connection)
    broken = create_stream(api, pipeline, connection)
    api.post(f"/api/streams/{broken['id']}/start")
    report(server, broken["attributes"]["source_id"], "Broken", "boom")
    after = counts()
    assert after["total"] == before["total"] + 2
    assert after["by_status"]["created"] == before["by_status"]["created"] + 1
    assert after["by_status"]["error"] == before["by_status"]["error"] + 1
    assert created["id"]


def test_metrics_are_not_invented(
    api: httpx.Client, pipeline: dict[str, Any], connection: dict[str, Any]
) -> None:
    stream = create_stream(api, pipeline, connection)
    r = api.get(f"/api/streams/{stream['id']}/metrics")
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["id"] == stream["id"] and data["type"] == "stream_metrics"
    attrs = data["attributes"]
    assert attrs["stream_id"] == stream["id"]
    assert attrs["window"] == "5m"
    assert attrs["measured"] is False
    assert attrs["events_per_second"] == 0 and attrs["bytes_per_second"] == 0
    assert attrs["lag_seconds"] is None and attrs["last_event_at"] is None
    for window in ("1m", "5m", "1h", "24h"):
        got = api.get(f"/api/streams/{stream['id']}/metrics", params={"window": window})
        assert got.json()["data"]["attributes"]["window"] == window
    assert (
        api.get(f"/api/streams/{stream['id']}/metrics", params={"window": "2d"}).status_code == 422
    )


def test_delete_stream_releases_its_slot(api: httpx.Client, pipeline: dict[str, Any]) -> None:
    slot, publication = f"tf_{uuid.uuid4().hex[:12]}", f"tf_pub_{uuid.uuid4().hex[:8]}"
    with pg.temp_database("tfstream") as dbname:
        with psycopg.connect(pg.dsn(dbname), autocommit=True) as conn:
            conn.execute("CREATE TABLE public.orders (id int PRIMARY KEY)")
            conn.execute(f"CREATE PUBLICATION {publication} FOR TABLE public.orders")
            # As the engine marks the publications it creates (others are left alone).
            conn.execute(f"COMMENT ON PUBLICATION {publication} IS '{MARKER}'")
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        r = api.post(
            "/api/connections",
            json={
                "name": unique("conn"),
                "kind": "postgres",
                "host": pg.HOST,
                "port": pg.PORT,
                "username": pg.USER,
                "password": pg.PASSWORD,
                "database": dbname,
                "options": {"sslmode": "disable"},
            },
        )
        assert r.status_code == 201, r.text
        conn_id = r.json()["data"]["id"]
        r = api.post(
            "/api/streams",
            json={
                "name": unique("stream"),
                "sourceType": "postgres_cdc",
                "pipelineId": pipeline["id"],
                "connectionId": conn_id,
                "config": {
                    "publication": publication,
                    "slot_name": slot,
                    "tables": ["public.orders"],
                },
            },
        )
        assert r.status_code == 201, r.text
        stream = r.json()["data"]
        source_id = stream["attributes"]["source_id"]

        r = api.delete(f"/api/streams/{stream['id']}")
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert data["id"] == stream["id"] and data["type"] == "stream"
        assert data["attributes"]["deleted"] is True
        assert datetime.fromisoformat(data["attributes"]["deleted_at"]).tzinfo is not None
        with psycopg.connect(pg.dsn(dbname)) as conn:
            slots = conn.execute(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
            pubs = conn.execute(
                "SELECT count(*) FROM pg_publication WHERE pubname = %s", (publication,)
            ).fetchone()
        assert slots == (0,) and pubs == (0,)
    assert api.get(f"/api/streams/{stream['id']}").status_code == 404
    assert api.get(f"/sources/{source_id}").json()["result"] == []
    assert api.get(f"/topics/source_{source_id}.public.orders").status_code == 404
    assert api.delete(f"/api/streams/{stream['id']}").status_code == 404
    assert api.delete(f"/api/connections/{conn_id}").status_code == 200


def test_failed_cleanup_refuses_the_delete_unless_forced(
    api: httpx.Client, pipeline: dict[str, Any], connection: dict[str, Any]
) -> None:
    stream = create_stream(api, pipeline, connection)  # its host does not resolve
    r = api.delete(f"/api/streams/{stream['id']}")
    assert r.status_code == 409
    error = r.json()["errors"][0]
    assert error["code"] == "upstream_cleanup_failed" and "force" in error["detail"]
    kept = attributes(api, stream["id"])
    assert kept["pipeline_id"] == pipeline["id"] and kept["status"] == "created"
    r = api.delete(f"/api/streams/{stream['id']}", params={"force": "true"})
    assert r.status_code == 200, r.text
    assert api.get(f"/api/streams/{stream['id']}").status_code == 404


def test_a_pipelines_own_source_cannot_be_deleted_as_a_stream(api: httpx.Client) -> None:
    src = create_source(api)
    pipe = create_pipeline(api, src, create_destination(api))
    stream = api.get("/api/streams", params={"pipeline_id": pipe["id"]}).json()["data"][0]
    for force in ("false", "true"):
        r = api.delete(f"/api/streams/{stream['id']}", params={"force": force})
        assert r.status_code == 409
        assert pipe["name"] in r.json()["errors"][0]["detail"]
    assert api.get(f"/api/streams/{stream['id']}").status_code == 200


def test_fan_in_streams_keep_their_pipeline_when_delete_is_refused(
    api: httpx.Client, connection: dict[str, Any]
) -> None:
    src = create_source(api)
    pipe = create_pipeline(api, src, create_destination(api))
    first = create_stream(api, pipe, connection)
    second = create_stream(api, pipe, connection)
    listed = {
        s["id"] for s in api.get("/api/streams", params={"pipeline_id": pipe["id"]}).json()["data"]
    }
    assert {first["id"], second["id"]} <= listed and len(listed) == 3
    r = api.delete(f"/api/streams/{first['id']}", params={"force": "true"})
    assert r.status_code == 200, r.text
    assert attributes(api, second["id"])["pipeline_id"] == pipe["id"]


def test_viewer_reads_streams_but_cannot_act(
    server: Server, api: httpx.Client, pipeline: dict[str, Any], connection: dict[str, Any]
) -> None:
    stream = create_stream(api, pipeline, connection)
    with viewer_client(server, api) as viewer:
        assert viewer.get(f"/api/streams/{stream['id']}").status_code == 200
        assert viewer.get("/api/streams/summary").status_code == 200
        r = viewer.post(f"/api/streams/{stream['id']}/start")
        assert r.status_code == 403
        assert r.json()["errors"][0]["code"] == "forbidden"
        assert viewer.delete(f"/api/streams/{stream['id']}").status_code == 403
        assert (
            viewer.post("/api/streams", json=stream_body(pipeline, connection)).status_code == 403
        )
    assert attributes(api, stream["id"])["status"] == "created"


def test_a_stream_runs_end_to_end_in_a_worker(engine_server: Server) -> None:
    """With the embedded worker: a stream waits in ``created`` (no slot), ``start`` makes the
    runtime run it into its pipeline's destination, pause/stop show as the runtime reports
    them, and delete releases the slot."""
    with (
        pg.temp_database("tfprim") as primary_db,
        pg.temp_database("tfstr") as stream_db,
        pg.temp_database("tfdst") as dest_db,
    ):
        with psycopg.connect(pg.dsn(primary_db), autocommit=True) as conn:
            conn.execute("CREATE TABLE public.items (id int PRIMARY KEY, t text)")
        with psycopg.connect(pg.dsn(stream_db), autocommit=True) as conn:
            conn.execute("CREATE TABLE public.orders (id int PRIMARY KEY, qty int)")
        with engine_server.client() as c:
            source = support_api.create(
                c,
                "/sources",
                {
                    "name": unique("src"),
                    "connector": "postgresql",
                    "config": support_api.pg_source_config(primary_db),
                },
            )
            dest = support_api.create(
                c,
                "/destinations",
                {
                    "name": unique("dst"),
                    "connector": "postgresql",
                    "config": support_api.pg_destination_config(dest_db),
                },
            )
            pipe = support_api.create_pipeline(c, source, dest)
            support_api.wait_status(c, "pipelines", pipe["id"], "Active")

            conn_id = c.post(
                "/api/connections",
                json={
                    "name": unique("conn"),
                    "kind": "postgres",
                    "host": pg.HOST,
                    "port": pg.PORT,
                    "username": pg.USER,
                    "password": pg.PASSWORD,
                    "database": stream_db,
                    "options": {"sslmode": "disable"},
                },
            ).json()["data"]["id"]
            slot = f"tf_{uuid.uuid4().hex[:12]}"
            r = c.post(
                "/api/streams",
                json={
                    "name": unique("stream"),
                    "sourceType": "postgres_cdc",
                    "pipelineId": pipe["id"],
                    "connectionId": conn_id,
                    "config": {"slot_name": slot, "publication": slot, "tables": ["public.orders"]},
                },
            )
            assert r.status_code == 201, r.text
            sid = r.json()["data"]["id"]

            def status() -> str:
                return str(attributes(c, sid)["status"])

            def slots() -> int:
                with psycopg.connect(pg.dsn(stream_db)) as conn:
                    row = conn.execute(
                        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", (slot,)
                    ).fetchone()
                    return int(row[0]) if row else 0

            assert status() == "created"
            assert slots() == 0  # a created stream is not run

            assert c.post(f"/api/streams/{sid}/start").json()["data"]["attributes"]["status"] == (
                "starting"
            )
            wait_until(lambda: status() == "running", timeout=60, what="the stream to run")
            assert slots() == 1
            with psycopg.connect(pg.dsn(stream_db), autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO public.orders SELECT g, g * 2 FROM generate_series(1, 50) g"
                )
            expected = pg.table_checksum(stream_db, "public.orders", order_by="id")

            def delivered() -> bool:
                try:
                    return pg.table_checksum(dest_db, "public.orders", "id, qty", "id") == expected
                except psycopg.Error:
                    return False

            wait_until(delivered, timeout=60, what="the stream's rows at the destination")

            c.post(f"/api/streams/{sid}/pause")
            wait_until(lambda: status() == "paused", timeout=60, what="the stream to pause")
            c.post(f"/api/streams/{sid}/stop")
            wait_until(lambda: status() == "stopped", timeout=60, what="the stream to stop")
            summary = c.get("/api/streams/summary").json()["data"]["attributes"]
            assert summary["by_status"]["stopped"] >= 1

            r = c.delete(f"/api/streams/{sid}")
            assert r.status_code == 200, r.text
            assert slots() == 0


def test_deleting_a_pipeline_detaches_its_streams(
    api: httpx.Client, connection: dict[str, Any]
) -> None:
    doomed = create_pipeline(api, create_source(api), create_destination(api))
    stream = create_stream(api, doomed, connection)
    assert stream["attributes"]["pipeline_id"] == doomed["id"]
    assert api.delete(f"/pipelines/{doomed['id']}").status_code == 200
    r = api.get(f"/api/streams/{stream['id']}")
    assert r.status_code == 200, r.text
    assert r.json()["data"]["attributes"]["pipeline_id"] != doomed["id"]
    listed = api.get("/api/streams", params={"pipeline_id": doomed["id"]}).json()["data"]
    assert stream["id"] not in [s["id"] for s in listed]
