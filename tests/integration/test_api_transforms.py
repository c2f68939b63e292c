"""Platform API: /transforms — config rules, versioned implementations, deployment records
and the honest job status (RUNNING only while an Active pipeline executes it) — on a live server."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.integration.platform_helpers import (
    create_destination,
    create_pipeline,
    create_source,
    unique,
    viewer_client,
)
from tests.support.server import Server

DEVELOPMENT_TAG = "670e5ca40afe1d3983ce0c22"
OBJECT_ID = re.compile(r"[0-9a-f]{24}")
TYPES = ["map_filter", "enrich", "sql_join", "rollup", "fan_out", "topic_router"]

PY_VALUE = (
    "def _streamkap_transform(valueObject, keyObject, topic, timestamp):\n    return valueObject\n"
)
JS_VALUE = (
    "function _streamkap_transform(valueObject, keyObject, topic, timestamp) "
    "{ return valueObject; }"
)


def config(**overrides: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "transforms.name": unique("tr"),
        "transforms.language": "Python",
        "transforms.input.topic.pattern": r"source_[0-9a-f]+\.public\.orders",
        "transforms.output.topic.pattern": "orders_clean",
    }
    out.update(overrides)
    return out


def create(api: httpx.Client, kind: str = "map_filter", **body: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"transform": kind, "config": config()}
    payload.update(body)
    r = api.post("/transforms", json=payload)
    assert r.status_code == 200, r.text
    return dict(r.json())


def save(api: httpx.Client, transform_id: str, implementation: dict[str, Any]) -> httpx.Response:
    return api.put(
        f"/transforms/{transform_id}/implementation_details",
        json={"implementation": implementation, "description": "test"},
    )


@pytest.mark.parametrize("kind", TYPES)
def test_create_each_type(api: httpx.Client, kind: str) -> None:
    cfg = config(**{"transforms.input.serialization.format": "Json", "custom.count": 3})
    r = api.post(
        "/transforms", json={"transform": kind, "config": cfg, "created_from": "terraform"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert "result" not in body
    assert OBJECT_ID.fullmatch(body["id"])
    assert body["name"] == cfg["transforms.name"]
    assert body["transform_type"] == kind
    assert body["config"] == cfg  # verbatim, types included
    assert body["status"] == "NOT_DEPLOYED"
    assert body["version"] == 0 and body["implementation"] is None
    assert body["start_time"] is None
    assert body["created_from"] == "terraform"


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"transform": "teleport", "config": {"transforms.name": "x"}}, "transform"),
        ({"transform": "map_filter", "config": {}}, "transforms.name"),
        ({"transform": "map_filter", "config": {"transforms.name": ""}}, "transforms.name"),
        (
            {"transform": "map_filter", "config": config(**{"transforms.language": "Ruby"})},
            "transforms.language",
        ),
        (
            {"transform": "map_filter", "config": config(**{"transforms.language": "SQL"})},
            "transforms.language",
        ),
        (
            {
                "transform": "map_filter",
                "config": config(**{"transforms.input.topic.pattern": "(["}),
            },
            "transforms.input.topic.pattern",
        ),
        (
            {"transform": "fan_out", "config": config(**{"transforms.output.topic.pattern": "a)"})},
            "transforms.output.topic.pattern",
        ),
        (
            {"transform": "map_filter", "config": config(**{"transforms.input.topic.pattern": 5})},
            "transforms.input.topic.pattern",
        ),
        ({"transform": "map_filter", "config": config(), "tags": ["0" * 24]}, "tag"),
    ],
    ids=[
        "unknown-type",
        "no-name",
        "blank-name",
        "unknown-language",
        "sql-for-code-transform",
        "bad-input-regex",
        "bad-output-regex",
        "pattern-not-string",
        "unknown-tag",
    ],
)
def test_invalid_create_is_422_naming_the_key(
    api: httpx.Client, body: dict[str, Any], names: str
) -> None:
    r = api.post("/transforms", json=body)
    assert r.status_code == 422, r.text
    assert names in str(r.json()["detail"])


def test_sql_language_is_accepted_for_sql_transforms(api: httpx.Client) -> None:
    t = create(api, "sql_join", config=config(**{"transforms.language": "SQL"}))
    assert t["config"]["transforms.language"] == "SQL"


def test_duplicate_name_is_422_already_exists(api: httpx.Client) -> None:
    t = create(api)
    r = api.post(
        "/transforms",
        json={"transform": "fan_out", "config": config(**{"transforms.name": t["name"]})},
    )
    assert r.status_code == 422
    assert "already exists" in r.json()["detail"]


def test_get_by_id_and_list_envelopes(api: httpx.Client) -> None:
    t = create(api, tags=[DEVELOPMENT_TAG])
    assert t["tags"] == [DEVELOPMENT_TAG]
    got = api.get(f"/transforms/{t['id']}").json()
    assert got["total"] == 1 and got["has_next"] is False
    assert got["result"][0]["id"] == t["id"]
    for unknown in ("0" * 24, "not-an-id"):
        r = api.get(f"/transforms/{unknown}")
        assert r.status_code == 200
        assert r.json()["result"] == []
    listed = api.get("/transforms", params={"partial_name": t["name"]}).json()
    assert [x["id"] for x in listed["result"]] == [t["id"]]
    assert set(listed) == {"result", "page", "page_size", "total", "has_next"}


def test_list_pagination(api: httpx.Client) -> None:
    prefix = unique("pg")
    ids = [
        create(api, config=config(**{"transforms.name": f"{prefix}-{i}"}))["id"] for i in range(3)
    ]
    page1 = api.get(
        "/transforms", params={"partial_name": prefix, "page_size": 2, "sort": "name"}
    ).json()
    page2 = api.get(
        "/transforms", params={"partial_name": prefix, "page_size": 2, "page": 2, "sort": "name"}
    ).json()
    assert page1["total"] == 3 and page1["has_next"] is True
    assert page2["has_next"] is False
    assert [x["id"] for x in page1["result"] + page2["result"]] == ids
    desc = api.get(
        "/transforms", params={"partial_name": prefix, "sort": "name", "sort_dir": "desc"}
    ).json()
    assert [x["id"] for x in desc["result"]] == ids[::-1]


def test_update_with_id_in_body(api: httpx.Client) -> None:
    t = create(api)
    new_cfg = config(**{"transforms.language": "JavaScript"})
    r = api.put("/transforms", json={"id": t["id"], "transform": "fan_out", "config": new_cfg})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == new_cfg["transforms.name"]
    assert body["transform_type"] == "fan_out"
    assert body["config"] == new_cfg
    assert api.get(f"/transforms/{t['id']}").json()["result"][0]["config"] == new_cfg

    other = create(api)
    clash = config(**{"transforms.name": other["name"]})
    r = api.put("/transforms", json={"id": t["id"], "config": clash})
    assert r.status_code == 422 and "already exists" in r.json()["detail"]
    r = api.put("/transforms", json={"id": "0" * 24, "config": config()})
    assert r.status_code == 404


def test_update_with_implementation_adds_a_version_only_when_it_changes(api: httpx.Client) -> None:
    t = create(api)
    impl = {"language": "Python", "value_transform": PY_VALUE}
    body = {"id": t["id"], "transform": "map_filter", "config": t["config"], "implementation": impl}
    assert api.put("/transforms", json=body).json()["version"] == 1
    # Terraform sends the implementation it read back: no new version.
    assert api.put("/transforms", json=body).json()["version"] == 1
    changed = dict(impl, value_transform=PY_VALUE.replace("return valueObject", "return None"))
    r = api.put("/transforms", json={**body, "implementation": changed})
    assert r.json()["version"] == 2
    assert r.json()["implementation"] == changed


def test_delete_returns_the_object(api: httpx.Client) -> None:
    t = create(api)
    r = api.delete("/transforms", params={"id": t["id"]})
    assert r.status_code == 200
    assert r.json()["id"] == t["id"] and r.json()["name"] == t["name"]
    assert api.get(f"/transforms/{t['id']}").json()["result"] == []
    assert api.delete("/transforms", params={"id": t["id"]}).status_code == 404
    assert api.delete("/transforms").status_code == 422


def test_delete_is_refused_while_a_pipeline_uses_it(api: httpx.Client) -> None:
    t = create(api)
    src, dst = create_source(api), create_destination(api)
    pipe = create_pipeline(
        api,
        src,
        dst,
        transforms=[
            {
                "id": t["id"],
                "name": t["name"],
                "topic_id": src["topic_ids"][0],
                "topic": src["topics"][0],
            }
        ],
    )
    r = api.delete("/transforms", params={"id": t["id"]})
    assert r.status_code == 409
    assert pipe["name"] in r.json()["detail"]
    assert api.delete(f"/pipelines/{pipe['id']}").status_code == 200
    assert api.delete("/transforms", params={"id": t["id"]}).status_code == 200


def test_implementation_versions_are_immutable(api: httpx.Client) -> None:
    t = create(api)
    v1 = {"language": "Python", "value_transform": PY_VALUE}
    r = save(api, t["id"], v1)
    assert r.status_code == 200, r.text
    assert r.json()["version_id"] == "1"
    v2 = {"language": "PYTHON", "value_transform": PY_VALUE + "\n# v2\n", "key_transform": ""}
    assert save(api, t["id"], v2).json()["version_id"] == "2"
    details = api.get(f"/transforms/{t['id']}/implementation_details").json()
    assert details["transform_id"] == t["id"]
    assert list(details["impl_versions"]) == ["1", "2"]
    assert details["impl_versions"]["1"]["implementation"] == v1
    assert details["impl_versions"]["2"]["implementation"] == v2
    assert details["latest_version"] == "2"
    current = api.get(f"/transforms/{t['id']}").json()["result"][0]
    assert current["version"] == 2 and current["implementation"] == v2


@pytest.mark.parametrize(
    ("language", "implementation", "message"),
    [
        (
            "Python",
            {"value_transform": "def _streamkap_transform(v, k, t, ts):\n    return v +\n"},
            "line 2",
        ),
        ("Python", {"value_transform": "x = 1\ny = (\n"}, "line"),
        (
            "Python",
            {"value_transform": "def transform(v, k, t, ts):\n    return v\n"},
            "_streamkap_transform",
        ),
        (
            "Python",
            {
                "value_transform": PY_VALUE,
                "key_transform": "def other(v, k, t, ts):\n    return k\n",
            },
            "_streamkap_transform_key",
        ),
        (
            "Python",
            {"key_transform": "def _streamkap_transform_key(v, k, t, ts):\n    return k\n"},
            "value_transform",
        ),
        (
            "JavaScript",
            {"value_transform": "function transform(v) { return v; }"},
            "_streamkap_transform",
        ),
        (
            "JavaScript",
            {"value_transform": JS_VALUE, "topic_transform": "function f() {}"},
            "_streamkap_transform_topic",
        ),
        ("Python", {"language": "COBOL", "value_transform": PY_VALUE}, "language"),
        ("Python", {"value_transform": 42}, "value_transform"),
    ],
    ids=[
        "python-syntax-error",
        "python-unclosed",
        "python-missing-entry-point",
        "python-key-entry-point",
        "map-filter-needs-value-code",
        "js-missing-entry-point",
        "js-topic-entry-point",
        "unknown-language",
        "code-not-a-string",
    ],
)
def test_invalid_implementation_is_422(
    api: httpx.Client, language: str, implementation: dict[str, Any], message: str
) -> None:
    t = create(api, config=config(**{"transforms.language": language}))
    r = save(api, t["id"], implementation)
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]
    assert api.get(f"/transforms/{t['id']}/implementation_details").json()["impl_versions"] == {}


def test_python_syntax_error_names_the_line(api: httpx.Client) -> None:
    t = create(api)
    code = "import json\n\ndef _streamkap_transform(v, k, t, ts):\n    return json.dumps(v\n"
    r = save(api, t["id"], {"language": "Python", "value_transform": code})
    assert r.status_code == 422
    assert re.search(r"line \d+", r.json()["detail"])


def test_javascript_and_sql_implementations(api: httpx.Client) -> None:
    js = create(api, "fan_out", config=config(**{"transforms.language": "JavaScript"}))
    impl = {
        "language": "JAVASCRIPT",
        "value_transform": JS_VALUE,
        "topic_transform": "var _streamkap_transform_topic = function(v, k, topic, ts) "
        "{ return [topic + '_a', topic + '_b']; };",
    }
    assert save(api, js["id"], impl).status_code == 200
    sql = create(api, "sql_join", config=config(**{"transforms.language": "SQL"}))
    impl = {
        "inputTables": [{"name": "orders", "topicMatcherRegex": ".*orders$"}],
        "joinSQL": "SELECT 1",
    }
    assert save(api, sql["id"], impl).status_code == 200


def test_deploy_records_versions_and_job_status_is_honest(api: httpx.Client) -> None:
    t = create(api)
    status = api.get(f"/transforms/{t['id']}/job_status").json()
    assert set(status) >= {"id", "job_name", "status", "start_time"}
    assert status["status"] == "NOT_DEPLOYED" and status["running"] is False

    r = api.put(f"/transforms/{t['id']}/deploy-job-preview/no-version")
    assert r.status_code == 422 and "implementation" in r.json()["detail"]
    save(api, t["id"], {"language": "Python", "value_transform": PY_VALUE})
    save(api, t["id"], {"language": "Python", "value_transform": PY_VALUE + "# v2\n"})

    r = api.put(
        f"/transforms/{t['id']}/deploy-job-preview/no-version", params={"replay_window": "24h"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2 and r.json()["target"] == "preview"
    r = api.put(f"/transforms/{t['id']}/deploy-job-live/1")
    assert r.status_code == 200 and r.json()["version"] == 1
    assert r.json()["running"] is False

    assert api.put(f"/transforms/{t['id']}/deploy-job-live/7").status_code == 404
    assert api.put(f"/transforms/{t['id']}/deploy-job-live/latest-ish").status_code == 422
    assert api.put(f"/transforms/{'0' * 24}/deploy-job-live/1").status_code == 404

    status = api.get(f"/transforms/{t['id']}/job_status").json()
    assert status["id"] == t["id"]
    assert status["job_name"]
    assert status["status"] == "DEPLOYED_NOT_RUNNING"
    assert status["start_time"] is None
    # map_filter can run, but no Active pipeline lists it: honestly not running.
    assert status["running"] is False and status["execution_available"] is True
    assert "Not running" in status["message"]
    assert (status["live_version"], status["preview_version"]) == (1, 2)
    details = api.get(f"/transforms/{t['id']}/implementation_details").json()
    assert (details["live_version"], details["preview_version"]) == ("1", "2")
    got = api.get(f"/transforms/{t['id']}").json()["result"][0]
    assert got["status"] == "DEPLOYED_NOT_RUNNING" and got["start_time"] is None


def test_unknown_transform_subresources_are_404(api: httpx.Client) -> None:
    for path in ("implementation_details", "job_status"):
        assert api.get(f"/transforms/{'0' * 24}/{path}").status_code == 404
    r = save(api, "0" * 24, {"value_transform": PY_VALUE})
    assert r.status_code == 404


def test_topics_follow_the_input_pattern(api: httpx.Client) -> None:
    src = create_source(api)
    pattern = re.escape(f"source_{src['id']}.") + r"public\.orders"
    t = create(api, config=config(**{"transforms.input.topic.pattern": pattern}))
    assert t["topic_ids"] == [f"source_{src['id']}.public.orders"]
    assert t["topics"] == ["public.orders"]


def test_viewer_cannot_change_transforms(server: Server, api: httpx.Client) -> None:
    t = create(api)
    with viewer_client(server, api) as viewer:
        assert viewer.get(f"/transforms/{t['id']}").status_code == 200
        assert viewer.get(f"/transforms/{t['id']}/job_status").status_code == 200
        assert save(viewer, t["id"], {"value_transform": PY_VALUE}).status_code == 403
        assert viewer.put(f"/transforms/{t['id']}/deploy-job-live/1").status_code == 403
        assert viewer.delete("/transforms", params={"id": t["id"]}).status_code == 403


SAMPLES = [
    {"value": {"id": 1, "name": "ann"}, "key": {"id": 1}, "topic": "public.users", "timestamp": 7},
    {"value": {"id": 2, "name": "bob"}, "key": {"id": 2}, "topic": "public.users", "timestamp": 8},
]
JS_TEST = """function _streamkap_transform(valueObject, keyObject, topic, timestamp) {
  if (valueObject.id === 2) return null;
  valueObject.name = valueObject.name.toUpperCase();
  valueObject.ts = timestamp;
  return valueObject;
}
function _streamkap_transform_topic(valueObject, keyObject, topic, timestamp) {
  return [topic, 'audit.users'];
}"""
PY_TEST = """def _streamkap_transform(valueObject, keyObject, topic, timestamp):
    if valueObject["id"] == 2:
        return None
    valueObject["name"] = valueObject["name"].upper()
    valueObject["ts"] = timestamp
    return valueObject


def _streamkap_transform_topic(valueObject, keyObject, topic, timestamp):
    return [topic, "audit.users"]
"""
BROKEN = {
    # (syntax error, runtime error on the first sample), each on line 3
    "JavaScript": (
        "function _streamkap_transform(v) {\n  var x = 1;\n  return v.id +;\n}",
        "function _streamkap_transform(v) {\n  var x = 1;\n  return v.missing.field;\n}",
    ),
    "Python": (
        # parses (so it can be saved) but does not compile: the sandbox reports it
        "def _streamkap_transform(v, k, t, ts):\n    return v\nreturn 1\n",
        "def _streamkap_transform(v, k, t, ts):\n    x = 1\n    return v['missing']\n",
    ),
}


def coded(api: httpx.Client, language: str, source: str) -> str:
    t = create(
        api,
        "fan_out",
        config=config(**{"transforms.language": language}),
        implementation={"language": language, "value_transform": source},
    )
    return str(t["id"])


@pytest.mark.parametrize(("language", "source"), [("JavaScript", JS_TEST), ("Python", PY_TEST)])
def test_test_endpoint_runs_code_on_samples(api: httpx.Client, language: str, source: str) -> None:
    tid = coded(api, language, source)
    r = api.post(f"/transforms/{tid}/test", json={"records": SAMPLES})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["transform_id"], body["version"], body["language"]) == (tid, 1, language)
    value = {"id": 1, "name": "ANN", "ts": 7}
    assert body["results"] == [
        {
            "index": 0,
            "dropped": False,
            "outputs": [
                {"topic": "public.users", "key": {"id": 1}, "value": value},
                {"topic": "audit.users", "key": {"id": 1}, "value": value},
            ],
        },
        {"index": 1, "dropped": True, "outputs": []},
    ]


@pytest.mark.parametrize("language", ["JavaScript", "Python"])
@pytest.mark.parametrize("kind", ["syntax", "runtime"])
def test_test_endpoint_reports_code_errors_with_line(
    api: httpx.Client, language: str, kind: str
) -> None:
    syntax, runtime = BROKEN[language]
    # The stored code is valid; the broken code is a second version, tested by number.
    tid = coded(api, language, PY_VALUE if language == "Python" else JS_VALUE)
    impl = {"language": language, "value_transform": syntax if kind == "syntax" else runtime}
    r = api.put(f"/transforms/{tid}/implementation_details", json={"implementation": impl})
    assert r.status_code == 200, r.text
    r = api.post(f"/transforms/{tid}/test", json={"records": SAMPLES, "version": 2})
    assert r.status_code == 422, r.text
    error = r.json()
    assert error["code"] == "transform_code_error" and error["line"] == 3, error
    assert error["record"] == (None if kind == "syntax" else 0), error
    assert "line 3" in error["detail"], error


def test_test_endpoint_limits_and_bad_input(api: httpx.Client) -> None:
    tid = coded(api, "JavaScript", "function _streamkap_transform(v) { while (true) {} }")
    r = api.post(f"/transforms/{tid}/test", json={"records": SAMPLES[:1]})
    assert r.status_code == 422 and "time limit" in r.json()["detail"], r.text
    r = api.post(f"/transforms/{tid}/test", json={"records": []})
    assert r.status_code == 422, r.text
    r = api.post(f"/transforms/{tid}/test", json={"records": SAMPLES, "version": 9})
    assert r.status_code == 404, r.text
    r = api.post(f"/transforms/{'0' * 24}/test", json={"records": SAMPLES})
    assert r.status_code == 404, r.text
