"""Sharded pipelines end to end (docs/cluster.md#sharded-pipelines): one Postgres source and one
Postgres destination whose pipeline has ``cluster.shards`` = 3, run by two or three
`tideflow worker` processes in log mode, under a concurrent workload of inserts, updates and
deletes. The shards run on more than one worker; the worker holding shard 1 is killed
(SIGKILL) mid-load and its shards move; at the end the destination equals the source
(checksum over every column), every shard's checkpoint holds only its own partitions, and no
shard checkpoint was ever written by a worker that did not hold that shard's lease (an audit
trigger, as in test_cluster.py).

The API's refusal of shards for single-writer destinations is in
tests/integration/test_api_pipeline_shards.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import api, kafka, pg, workload
from tests.support.cluster import Cluster, running
from tests.support.server import wait_until

pytestmark = pytest.mark.integration

SHARDS = 3

# Every write of a shard checkpoint `pipeline:<id>/log#<k>/<N>` with the generation of the
# shard's lease `<id>#<k>` at that instant.
AUDIT = r"""
CREATE TABLE shard_audit (
    id bigserial PRIMARY KEY,
    unit text NOT NULL,
    generation bigint NOT NULL,
    lease_owner text,
    lease_generation bigint
);
CREATE FUNCTION audit_shard_checkpoint() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE o text; g bigint;
BEGIN
    IF NEW.unit ~ '^pipeline:[^/]+/log#[0-9]+/[0-9]+$' THEN
        SELECT l.owner, l.generation INTO o, g FROM leases l
        WHERE l.kind = 'pipeline'
          AND l.unit_id = substring(NEW.unit FROM '^pipeline:([^/]+)/log')
                          || '#' || substring(NEW.unit FROM '#([0-9]+)/');
        INSERT INTO shard_audit (unit, generation, lease_owner, lease_generation)
        VALUES (NEW.unit, NEW.generation, o, g);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER shard_audit AFTER INSERT OR UPDATE ON checkpoints
FOR EACH ROW EXECUTE FUNCTION audit_shard_checkpoint();
"""


@pytest.fixture(params=[2, 3], ids=lambda n: f"{n}-workers")
def cluster(
    tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Cluster]:
    # A shorter lease than the default keeps the killed worker's units (and the source's slot,
    # if it held the source) without an owner for less time; the bound itself is tested in
    # test_cluster.py.
    monkeypatch.setenv("TIDEFLOW_LEASE_TTL", "7")
    monkeypatch.setenv("TIDEFLOW_HEARTBEAT", "1")
    with running(tmp_path, [f"w{i}" for i in range(1, int(request.param) + 1)], AUDIT) as c:
        yield c


def pipeline_body(source: dict[str, Any], dest: dict[str, Any], shards: Any) -> dict[str, Any]:
    return {
        "name": api.unique("pipe"),
        "snapshot_new_tables": False,
        "source": {"id": source["id"], "topics": ["public.items"]},
        # An unknown key next to the setting: stored and echoed, as the contract requires.
        "destination": {"id": dest["id"], "cluster.shards": shards, "x.client.note": "kept"},
    }


def shard_owners(cluster: Cluster, pipeline_id: str) -> dict[int, tuple[str, int]]:
    """Shard index → (owner, generation) of the live shard leases."""
    rows = cluster.query(
        "SELECT unit_id, owner, generation FROM leases WHERE kind = 'pipeline' "
        "AND unit_id LIKE %s AND owner <> '' AND expires_at > clock_timestamp()",
        f"{pipeline_id}#%",
    )
    return {int(u.partition("#")[2]): (o, int(g)) for u, o, g in rows}


def _load(dbname: str, stop: threading.Event) -> None:
    while not stop.is_set():
        workload.run_pgbench(dbname, seconds=3, clients=2, rate=60)


@pytest.mark.timeout(900)
def test_three_shards_over_several_workers_survive_a_kill_and_converge(cluster: Cluster) -> None:
    src, dst = pg.create_database("src"), pg.create_database("dst")
    stop_load = threading.Event()
    loads: list[threading.Thread] = []
    try:
        workload.create_schema(src)
        with cluster.api.client() as c:
            source = api.create_pg_source(c, api.pg_source_config(src))
            dest = api.create_pg_destination(c, api.pg_destination_config(dst))
            pid = api.create(c, "/pipelines", pipeline_body(source, dest, SHARDS))["id"]
            api.wait_status(c, "pipelines", pid, "Active", timeout=180)
            # Three shard units balanced over the workers: more than one of them.
            owners = wait_until(
                lambda: (
                    o
                    if len(o := shard_owners(cluster, pid)) == SHARDS
                    and len({w for w, _ in o.values()}) > 1
                    else None
                ),
                120,
                what="the three shards leased by more than one worker",
            )
            view = wait_until(
                lambda: row if len((row := _pipeline(c, pid))["worker_ids"]) > 1 else None,
                60,
                what="the API to list the shards' workers",
            )
            assert view["worker_id"] == view["worker_ids"][0]
            assert set(view["worker_ids"]) <= set(cluster.workers)

        loads = [threading.Thread(target=_load, args=(src, stop_load), daemon=True)]
        loads[0].start()
        wait_until(lambda: workload.checksum(dst)[0] > 200, 180, what="rows in the destination")
        topic = (
            kafka.admin().list_topics(timeout=10).topics[f"tideflow.{source['id']}.public.items"]
        )
        assert len(topic.partitions) == SHARDS  # new topics get a partition per shard

        # SIGKILL the worker holding shard 1 mid-load; its shards move to the others.
        victim, generation = shard_owners(cluster, pid)[1]
        cluster.workers[victim].kill9()
        killed_at = time.monotonic()
        moved = wait_until(
            lambda: (
                o
                if (o := shard_owners(cluster, pid)).get(1, (victim, 0))[0] != victim
                and len(o) == SHARDS
                else None
            ),
            90,
            interval=0.2,
            what=f"shard 1 to leave the killed worker {victim}",
        )
        took = time.monotonic() - killed_at
        assert moved[1][1] > generation
        assert victim not in {w for w, _ in moved.values()}
        time.sleep(15)  # more load after the takeover
        stop_load.set()
        loads[0].join(60)

        expected = workload.checksum(src)
        started = time.monotonic()
        wait_until(
            lambda: workload.checksum(dst) == expected,
            240,
            interval=1,
            what=f"{dst} to equal {src} {expected}",
        )
        converged = time.monotonic() - started
        print(
            f"shards before the kill {sorted(owners.items())}, after {sorted(moved.items())}; "
            f"shard 1 moved {took:.1f}s after the SIGKILL of {victim}; destination equal "
            f"{converged:.1f}s after the load stopped ({expected[0]} rows)"
        )

        # Each shard checkpointed its own partitions only, under its own lease.
        stored = dict(
            cluster.query(
                "SELECT unit, position FROM checkpoints WHERE unit LIKE %s", f"pipeline:{pid}/%"
            )
        )
        for k in range(SHARDS):
            position = stored[f"pipeline:{pid}/log#{k}/{SHARDS}"]
            parts = {int(key.rpartition(":")[2]) for key in position["offsets"]}
            assert parts == {k}, (k, position)
        assert f"pipeline:{pid}/log" not in stored  # the unsharded unit never ran
        audit = cluster.query(
            "SELECT unit, generation, lease_owner, lease_generation FROM shard_audit"
        )
        assert len(audit) > SHARDS
        bad = [a for a in audit if a[2] is None or a[1] != a[3]]
        assert not bad, bad
        ran_on = cluster.query(
            "SELECT DISTINCT owner FROM lease_events WHERE kind = 'pipeline' AND unit_id LIKE %s",
            f"{pid}#%",
        )
        assert len(ran_on) > 1, ran_on

        # Down to two shards under load: the third unit goes away, shard 0 takes partition 2
        # over from where shard 2 left it (the group's offsets), and the destination converges.
        with cluster.api.client() as c:
            r = c.put(f"/pipelines/{pid}", json=pipeline_body(source, dest, 2))
            assert r.status_code == 200, r.text
        stop_load.clear()
        loads = [threading.Thread(target=_load, args=(src, stop_load), daemon=True)]
        loads[0].start()
        wait_until(
            lambda: (
                sorted(shard_owners(cluster, pid)) == [0, 1]
                and not cluster.query(
                    "SELECT 1 FROM leases WHERE kind = 'pipeline' AND unit_id = %s", f"{pid}#2"
                )
            ),
            90,
            what="two shards left",
        )
        time.sleep(10)
        stop_load.set()
        loads[0].join(60)
        expected = workload.checksum(src)
        wait_until(
            lambda: workload.checksum(dst) == expected,
            240,
            interval=1,
            what=f"{dst} to equal {src} {expected} with two shards",
        )
        stored = dict(
            cluster.query(
                "SELECT unit, position FROM checkpoints WHERE unit LIKE %s", f"pipeline:{pid}/%"
            )
        )
        for k, parts in ((0, {0, 2}), (1, {1})):
            position = stored[f"pipeline:{pid}/log#{k}/2"]
            assert {int(key.rpartition(":")[2]) for key in position["offsets"]} == parts
        audit = cluster.query(
            "SELECT unit, generation, lease_owner, lease_generation FROM shard_audit"
        )
        bad = [a for a in audit if a[2] is None or a[1] != a[3]]
        assert not bad, bad
        print(f"two shards: destination equal again ({expected[0]} rows)")
    finally:
        stop_load.set()
        for t in loads:
            t.join(60)
        for worker in cluster.workers.values():
            worker.stop()
        for name in (src, dst):
            pg.drop_database(name)


def _pipeline(c: httpx.Client, pid: str) -> dict[str, Any]:
    r = c.get(f"/pipelines/{pid}")
    r.raise_for_status()
    row: dict[str, Any] = r.json()["result"][0]
    return row
