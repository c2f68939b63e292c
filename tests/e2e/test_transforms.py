"""Transforms end to end through the live server: stored, deployed live, run in a pipeline.

Judged by the destination's contents, never by log lines.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from tests.support import api, pg, workload
from tests.support.server import Server, wait_until

pytestmark = pytest.mark.integration

JS_FILTER = """function _streamkap_transform(valueObject, keyObject, topic, timestamp) {
  if (valueObject.id % 5 === 0) return null;
  valueObject.t_len = valueObject.t.length;
  return valueObject;
}"""
PY_UPPER = """def _streamkap_transform(valueObject, keyObject, topic, timestamp):
    valueObject["vc"] = valueObject["vc"].upper()
    return valueObject
"""
JS_ROUTER = """function _streamkap_transform_topic(valueObject, keyObject, topic, timestamp) {
  return valueObject.id % 2 === 0 ? 'public.items_even' : topic;
}"""
KEY = "k3y"


@pytest.fixture
def dbs() -> Iterator[tuple[str, str]]:
    with pg.temp_database("src") as src, pg.temp_database("dst") as dst:
        workload.create_schema(src)
        yield src, dst


def transform(
    c: httpx.Client, kind: str, config: dict[str, Any], impl: dict[str, Any] | None
) -> str:
    body: dict[str, Any] = {
        "transform": kind,
        "config": {"transforms.name": api.unique("tr"), **config},
    }
    if impl is not None:
        body["implementation"] = impl
    t = api.create(c, "/transforms", body)
    if impl is not None:
        r = c.put(f"/transforms/{t['id']}/deploy-job-live/1")
        assert r.status_code == 200, r.text
    return str(t["id"])


def rows(dbname: str, table: str, columns: str = "t, vc, t_len") -> dict[int, tuple[Any, ...]]:
    """The destination table's rows by id (``{}`` until the table exists)."""
    try:
        with psycopg.connect(pg.dsn(dbname)) as conn:
            return {
                int(r[0]): tuple(r[1:])
                for r in conn.execute(f"SELECT id, {columns} FROM public.{table}")
            }
    except psycopg.errors.UndefinedTable:
        return {}


def dead_letters(dbname: str) -> dict[int, str]:
    """Dead-lettered record ids → error, from the destination's dead-letter table."""
    try:
        with psycopg.connect(pg.dsn(dbname)) as conn:
            return {
                int(r[0]): str(r[1])
                for r in conn.execute(
                    "SELECT (record_key->>0)::bigint, error FROM public.tideflow_dead_letters"
                )
            }
    except psycopg.errors.UndefinedTable:
        return {}


def pipeline(
    c: httpx.Client, src: str, dst: str, transforms: list[str], **dest: Any
) -> dict[str, Any]:
    source = api.create(
        c,
        "/sources",
        {"name": api.unique("src"), "connector": "postgresql", "config": api.pg_source_config(src)},
    )
    destination = api.create_pg_destination(c, api.pg_destination_config(dst))
    body = {
        "name": api.unique("pipe"),
        "snapshot_new_tables": False,
        "source": {
            "id": source["id"],
            "name": source["name"],
            "connector": "postgresql",
            "topics": [],
        },
        "destination": {
            "id": destination["id"],
            "name": destination["name"],
            "connector": "postgresql",
            **dest,
        },
        "transforms": [{"id": t} for t in transforms],
        "tags": [],
    }
    pipe = api.create(c, "/pipelines", body)
    api.wait_status(c, "pipelines", pipe["id"], "Active")
    # Rows written before the source's slot exists are not streamed (no snapshot here): the
    # pipeline may report Active a moment before its source does.
    api.wait_status(c, "sources", source["id"], "Active")
    return pipe


def test_js_python_hash_and_router(dbs: tuple[str, str], engine_server: Server) -> None:
    src, dst = dbs
    with engine_server.client() as c:
        ids = [
            transform(
                c,
                "map_filter",
                {"transforms.language": "JavaScript"},
                {"language": "JavaScript", "value_transform": JS_FILTER},
            ),
            transform(
                c,
                "map_filter",
                {"transforms.language": "Python"},
                {"language": "Python", "value_transform": PY_UPPER},
            ),
            transform(
                c,
                "map_filter",
                {"transforms.builtin": [{"op": "hash", "fields": ["t"], "key": KEY}]},
                None,
            ),
            transform(
                c,
                "topic_router",
                {"transforms.language": "JavaScript"},
                {"language": "JavaScript", "topic_transform": JS_ROUTER},
            ),
        ]
        pipeline(c, src, dst, ids)
        workload.insert_range(src, 1, 200)
        kept = [i for i in range(1, 201) if i % 5]

        def expected(i: int) -> tuple[Any, ...]:
            t = f"text {i}"
            return (
                hmac.new(KEY.encode(), t.encode(), hashlib.sha256).hexdigest(),
                f"VC{i}",
                len(t),
            )

        want_odd = {i: expected(i) for i in kept if i % 2}
        want_even = {i: expected(i) for i in kept if i % 2 == 0}
        wait_until(
            lambda: rows(dst, "items") == want_odd and rows(dst, "items_even") == want_even,
            90,
            interval=0.5,
            what="transformed rows at the destination",
        )
        status = c.get(f"/transforms/{ids[0]}/job_status").json()
        assert status["status"] == "RUNNING", status


def test_runaway_transforms_are_stopped_without_hurting_others(
    dbs: tuple[str, str], engine_server: Server
) -> None:
    src, dst = dbs
    loop = "function _streamkap_transform(v) { if (v.id == 3) { while (true) {} } return v; }"
    # 100 MB steps: the first one is over the limit, so the memory limit stops it at once.
    # Small steps also end at the memory limit, but filling 64 MB takes long enough on a
    # loaded machine for the (wall-clock) time limit to come first.
    hog = (
        "def _streamkap_transform(v, k, t, ts):\n"
        "    if v['id'] == 4:\n"
        "        a = []\n"
        "        while True:\n"
        "            a.append('x' * 10**8)\n"
        "    return v\n"
    )
    with pg.temp_database("dst2") as dst2, engine_server.client() as c:
        limits = {"transforms.limits.time.ms": 200, "transforms.limits.memory.mb": 64}
        bad = [
            transform(
                c,
                "map_filter",
                {"transforms.language": "JavaScript", **limits},
                {"language": "JavaScript", "value_transform": loop},
            ),
            transform(
                c,
                "map_filter",
                {"transforms.language": "Python", **limits},
                {"language": "Python", "value_transform": hog},
            ),
        ]
        dead = pipeline(c, src, dst, bad, **{"poison.policy": "dead_letter"})
        halted = pipeline(c, src, dst2, bad[:1])
        api.wait_status(c, "pipelines", dead["id"], "Active")
        api.wait_status(c, "pipelines", halted["id"], "Active")
        workload.insert_range(src, 1, 50)
        want = {i: (f"text {i}", f"vc{i}") for i in range(1, 51) if i not in (3, 4)}
        wait_until(
            lambda: rows(dst, "items", "t, vc") == want,
            90,
            interval=0.5,
            what="all but the two runaway records",
        )
        letters = wait_until(lambda: dead_letters(dst), 30, what="dead letters")
        assert sorted(letters) == [3, 4], letters
        assert "time limit" in letters[3], letters
        assert "memory limit" in letters[4], letters
        api.wait_status(c, "pipelines", halted["id"], "Broken")
        r = c.get(f"/pipelines/{halted['id']}").json()["result"][0]
        assert "time limit" in str(r), r
        # halt writes nothing of the failing batch: the runaway record never leaks through
        assert not set(rows(dst2, "items", "t")) - {1, 2}
