"""Cluster mode end to end: an API process and three `tideflow worker` processes on a
Postgres metadata store, three Postgres sources (each → Postgres, one also → Parquet) under
load, in log mode (the default: Postgres → Kafka topics → each pipeline on its own); workers
are killed (SIGKILL), frozen past their lease (SIGSTOP), brought back and drained. At the end
every destination equals its source (checksums), every takeover happened within the default
bound, and the store shows that no checkpoint was ever written by a worker that did not hold
the lease (an audit trigger compares each write's generation with the lease's at that
instant).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_pg_pipeline import fold_parquet, source_ids_and_t
from tests.support import api, cluster_diag, pg, workload
from tests.support.cluster import Cluster, running
from tests.support.server import wait_until

pytestmark = pytest.mark.integration

TAKEOVER_BOUND = 15.0  # seconds: the documented default (lease TTL 10 s + heartbeat 2 s)
SOURCES = 3

AUDIT = """
CREATE TABLE checkpoint_audit (
    id bigserial PRIMARY KEY,
    unit text NOT NULL,
    generation bigint NOT NULL,
    lease_owner text,
    lease_generation bigint,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE FUNCTION audit_checkpoint() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE o text; g bigint;
BEGIN
    IF NEW.unit LIKE 'log:%' THEN  -- log mode: a source's log, under the source's lease
        SELECT l.owner, l.generation INTO o, g FROM leases l
        WHERE l.kind = 'source' AND l.unit_id = substr(NEW.unit, 5);
    ELSIF NEW.unit LIKE 'pipeline:%/log' THEN  -- log mode: a pipeline, under its own lease
        SELECT l.owner, l.generation INTO o, g FROM leases l
        WHERE l.kind = 'pipeline' AND l.unit_id = substr(NEW.unit, 10, length(NEW.unit) - 13);
    ELSE
        SELECT l.owner, l.generation INTO o, g
        FROM pipelines p JOIN leases l ON l.kind = 'source' AND l.unit_id = p.source_id
        WHERE 'pipeline:' || p.id = split_part(NEW.unit, '/', 1);
    END IF;
    INSERT INTO checkpoint_audit (unit, generation, lease_owner, lease_generation)
    VALUES (NEW.unit, NEW.generation, o, g);
    RETURN NEW;
END $$;
CREATE TRIGGER checkpoint_audit AFTER INSERT OR UPDATE ON checkpoints
FOR EACH ROW EXECUTE FUNCTION audit_checkpoint();
"""


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running(tmp_path, ("w1", "w2", "w3"), AUDIT) as c:
        yield c


@pytest.fixture
def databases() -> Iterator[list[tuple[str, str]]]:
    made: list[str] = []
    pairs = []
    try:
        for _ in range(SOURCES):
            src, dst = pg.create_database("src"), pg.create_database("dst")
            made += [src, dst]
            workload.create_schema(src)
            pairs.append((src, dst))
        yield pairs
    finally:
        for name in made:
            pg.drop_database(name)


def unit_view(c: Any, kind: str, unit_id: str) -> tuple[str, str | None]:
    r = c.get(f"/{kind}/{unit_id}")
    r.raise_for_status()
    row = r.json()["result"][0]
    return str(row["connector_status"]), row.get("worker_id")


def create_pipelines(
    cluster: Cluster, pairs: list[tuple[str, str]], files: Path
) -> tuple[list[str], list[str]]:
    sources, pipelines = [], []
    with cluster.api.client() as c:
        for i, (src, dst) in enumerate(pairs):
            source = api.create_pg_source(c, api.pg_source_config(src))
            dest = api.create_pg_destination(c, api.pg_destination_config(dst))
            sources.append(source["id"])
            pipelines.append(api.create_pipeline(c, source, dest)["id"])
            if i == 0:
                fdest = api.create(
                    c,
                    "/destinations",
                    {
                        "name": api.unique("files"),
                        "connector": "files",
                        "config": {
                            "path.user.defined": str(files),
                            "format.user.defined": "parquet",
                        },
                    },
                )
                pipelines.append(api.create_pipeline(c, source, fdest)["id"])
        for pid in pipelines:
            api.wait_status(c, "pipelines", pid, "Active", timeout=120)
    return sources, pipelines


def takeover_after(cluster: Cluster, source_id: str, generation: int, since: datetime) -> float:
    """Seconds from ``since`` (a kill) to the takeover of the unit past ``generation``."""
    rows = wait_until(
        lambda: cluster.query(
            "SELECT at, owner FROM lease_events WHERE kind = 'source' AND unit_id = %s "
            "AND generation > %s AND event IN ('takeover', 'acquired') ORDER BY id LIMIT 1",
            source_id,
            generation,
        ),
        TAKEOVER_BOUND + 30,
        interval=0.2,
        what=f"takeover of {source_id}",
    )
    at: datetime = rows[0][0]
    return (at - since).total_seconds()


def db_now(cluster: Cluster) -> datetime:
    now: datetime = cluster.query("SELECT clock_timestamp()")[0][0]
    return now


def test_failover_rebalance_fencing_and_drain(
    cluster: Cluster, databases: list[tuple[str, str]], tmp_path: Path
) -> None:
    files = tmp_path / "lake"
    sources, pipelines = create_pipelines(cluster, databases, files)
    wait_until(
        lambda: sorted(len(v) for v in cluster.held_by().values()) == [1, 1, 1],
        60,
        what="one source per worker",
    )
    with cluster.api.client() as c:
        # The lease is taken before the new holder reports the unit: wait for the API to catch up.
        wait_until(
            lambda: {unit_view(c, "sources", s)[1] for s in sources} == {"w1", "w2", "w3"},
            30,
            what="the API to name the three workers",
        )
        streams = c.get("/api/streams").json()["data"]
        assert {s["attributes"]["worker_id"] for s in streams} == {"w1", "w2", "w3"}

    stop_load = threading.Event()
    loads = [
        threading.Thread(target=_load, args=(src, stop_load), daemon=True) for src, _ in databases
    ]
    for t in loads:
        t.start()
    takeovers: list[float] = []
    moves: list[list[tuple[str, str | None]]] = []
    try:
        # 1. SIGKILL the worker of the first source, then 2. the worker of another one.
        killed = []
        for source_id in sources[:2]:
            owner, generation = cluster.owner(source_id)
            killed.append(owner)
            cluster.workers[owner].kill9()
            since = db_now(cluster)
            seen: list[tuple[str, str | None]] = []
            watcher = threading.Thread(
                target=watch_move, args=(cluster, source_id, set(killed), seen), daemon=True
            )
            watcher.start()
            takeovers.append(takeover_after(cluster, source_id, generation, since))
            new_owner, _ = cluster.owner(source_id)
            assert new_owner not in killed
            watcher.join(90)
            # The API never calls the unit Broken while it moves, and it ends on the new owner.
            assert not any(state == "Broken" for state, _ in seen), seen
            assert seen and seen[-1] == ("Active", new_owner), seen
            moves.append([v for i, v in enumerate(seen) if i == 0 or seen[i - 1] != v])
        # 3. Both come back (same ids) and get their share again.
        for w in killed:
            cluster.workers[w].start()
        wait_until(
            lambda: sorted(len(v) for v in cluster.held_by().values()) == [1, 1, 1],
            90,
            what="rebalanced: one source per worker",
        )
        # 4. A worker frozen past its lease wakes up fenced: it loses the unit, writes nothing.
        frozen_source = sources[2]
        frozen, generation = cluster.owner(frozen_source)
        cluster.workers[frozen].signal(signal.SIGSTOP)
        since = db_now(cluster)
        takeovers.append(takeover_after(cluster, frozen_source, generation, since))
        cluster.workers[frozen].signal(signal.SIGCONT)
        wait_until(
            lambda: cluster.query(
                "SELECT 1 FROM lease_events WHERE event = 'lost' AND owner = %s AND unit_id = %s",
                frozen,
                frozen_source,
            ),
            30,
            what=f"{frozen} to notice it lost {frozen_source}",
        )
        # 5. Drain one worker: its units move without loss and the process exits.
        victim = next(iter(cluster.held_by()))
        drained = subprocess.run(
            [
                sys.executable,
                "-m",
                "tideflow.cli.main",
                "worker",
                "drain",
                victim,
                "--database-url",
                pg.url(cluster.meta),
                "--timeout",
                "90",
            ],
            capture_output=True,
            text=True,
        )
        assert drained.returncode == 0, drained.stderr
        proc = cluster.workers[victim].proc
        assert proc is not None and proc.wait(30) == 0
        assert victim not in cluster.held_by()
    finally:
        stop_load.set()
        for t in loads:
            t.join()

    try:
        with cluster.api.client() as c:
            for pid in pipelines:
                api.wait_status(c, "pipelines", pid, "Active", timeout=90)
        for src, dst in databases:
            expected = workload.checksum(src)
            wait_until(
                lambda d=dst, e=expected: workload.checksum(d) == e,
                180,
                interval=1,
                what=f"{dst} to equal {src} {expected}",
            )
    except AssertionError:
        explain(cluster, databases, sources, tmp_path)
        raise
    expected_t = source_ids_and_t(databases[0][0])
    wait_until(
        lambda: {k: v["t"] for k, v in fold_parquet(files).items()} == expected_t,
        90,
        what="parquet to fold to the first source table",
    )

    # The API names the lease holder as the worker of every source and pipeline.
    with cluster.api.client() as c:
        for sid in sources:
            assert unit_view(c, "sources", sid) == ("Active", cluster.owner(sid)[0])
        for pid in pipelines:  # log mode: every pipeline is a unit of its own
            assert unit_view(c, "pipelines", pid) == ("Active", cluster.owner(pid, "pipeline")[0])

    assert takeovers and max(takeovers) <= TAKEOVER_BOUND, takeovers
    audit = cluster.query(
        "SELECT unit, generation, lease_owner, lease_generation FROM checkpoint_audit"
    )
    assert audit, "no checkpoint was written at all"
    fenced = [r for r in audit if r[2] in (None, "") or r[1] != r[3]]
    assert fenced == [], fenced[:5]
    # The store also records how long each unit went without an owner.
    gaps = cluster.query(
        "SELECT extract(epoch FROM at - previous_renewed_at) FROM lease_events "
        "WHERE event = 'takeover' AND previous_renewed_at IS NOT NULL"
    )
    assert gaps and max(float(g[0]) for g in gaps) <= TAKEOVER_BOUND, gaps
    print(f"API views of the killed workers' sources while they moved: {moves}")
    print(f"takeover seconds after kill/freeze: {[round(t, 1) for t in takeovers]}")
    print(f"lease gaps in the store: {sorted(round(float(g[0]), 1) for g in gaps)}")


def explain(
    cluster: Cluster, databases: list[tuple[str, str]], sources: list[str], tmp_path: Path
) -> None:
    """Keep what tells a stall from a stale change: the store, the Kafka progress of every
    pipeline, the differing rows with their history in the log, and the workers' logs."""
    text = cluster_diag.report(cluster.meta, databases, sources)
    (tmp_path / "diagnostics.txt").write_text(text)
    print(text)
    for w in cluster.workers.values():
        print(f"=== {w.worker_id} (logs kept in {w.data_dir})\n{w.tail()}")


def watch_move(
    cluster: Cluster, source_id: str, dead: set[str], seen: list[tuple[str, str | None]]
) -> None:
    """Record what the API shows for the source until it is Active on a live worker."""
    deadline = time.monotonic() + 90
    with cluster.api.client() as c:
        while time.monotonic() < deadline:
            view = unit_view(c, "sources", source_id)
            seen.append(view)
            if view[0] == "Active" and view[1] is not None and view[1] not in dead:
                return
            time.sleep(0.25)


def _load(dbname: str, stop: threading.Event) -> None:
    while not stop.is_set():
        workload.run_pgbench(dbname, seconds=3, clients=1, rate=40)
