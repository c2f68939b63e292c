"""Log mode end to end: one Postgres source with two pipelines (Postgres destinations) run by
two `tideflow worker` processes. The source writes its changes to Kafka topics; each pipeline
reads them in its own consumer group. One destination is cut off (a TCP proxy in front of it)
for a minute under load: the other pipeline keeps its latency, the cut one catches up from the
log after the restore, and both end equal to the source (checksums). Then the cut pipeline is
paused, its destination emptied, rewound to the start of the log and resumed: it rebuilds the
destination from the log alone.

``TIDEFLOW_TEST_LOG_OUTAGE`` sets the outage in seconds (default 60).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import OffsetSpec

from tests.support import api, kafka, pg, workload
from tests.support.cluster import Cluster, running
from tests.support.proxy import Proxy
from tests.support.server import wait_until
from tideflow.engine.cluster import replay
from tideflow.engine.cluster.logmode import group_id
from tideflow.store.db import Store

pytestmark = pytest.mark.integration

OUTAGE = float(os.environ.get("TIDEFLOW_TEST_LOG_OUTAGE", "60"))
PROBE = "CREATE TABLE public.probe (id bigint PRIMARY KEY, at timestamptz NOT NULL)"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running(tmp_path, ("w1", "w2")) as c:
        yield c


class Probes:
    """Inserts a probe row every 0.2 s and measures when each one shows up in a destination."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.sent: dict[int, float] = {}
        self.stop = threading.Event()
        self._next = 1

    def run(self) -> None:
        with psycopg.connect(pg.dsn(self.src), autocommit=True) as conn:
            while not self.stop.wait(0.2):
                i = self._next
                self.sent[i] = time.time()
                conn.execute("INSERT INTO public.probe VALUES (%s, clock_timestamp())", (i,))
                self._next += 1

    def last(self) -> int:
        return self._next - 1


class Watcher:
    """Polls one destination's probe table; ``latencies`` holds (seen at, seconds)."""

    def __init__(self, dst: str, probes: Probes) -> None:
        self.dst = dst
        self.probes = probes
        self.latencies: list[tuple[float, float]] = []
        self.seen = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            try:
                with psycopg.connect(pg.dsn(self.dst), autocommit=True) as conn:
                    while not self.stop.wait(0.1):
                        rows = conn.execute(
                            "SELECT id FROM public.probe WHERE id > %s ORDER BY id", (self.seen,)
                        ).fetchall()
                        now = time.time()
                        for (i,) in rows:
                            self.latencies.append((now, now - self.probes.sent[int(i)]))
                        if rows:
                            self.seen = int(rows[-1][0])
            except psycopg.Error:
                continue  # the table does not exist yet

    def between(self, start: float, end: float) -> list[float]:
        return [lat for at, lat in self.latencies if start <= at < end]


def _load(dbname: str, stop: threading.Event) -> None:
    while not stop.is_set():
        workload.run_pgbench(dbname, seconds=3, clients=1, rate=40)


@pytest.mark.timeout(600)
def test_a_stopped_destination_holds_back_only_its_own_pipeline(cluster: Cluster) -> None:
    src, dst_ok, dst_cut = (pg.create_database(p) for p in ("src", "dsta", "dstb"))
    proxy = Proxy(pg.HOST, pg.PORT).start()
    source_id = ""
    pipelines: list[str] = []
    threads: list[threading.Thread] = []
    probes = Probes(src)
    watchers = [Watcher(dst_ok, probes), Watcher(dst_cut, probes)]
    stop_load = threading.Event()
    try:
        workload.create_schema(src)
        with psycopg.connect(pg.dsn(src), autocommit=True) as conn:
            conn.execute(PROBE)
        with cluster.api.client() as c:
            source = api.create_pg_source(c, api.pg_source_config(src, "public.items,public.probe"))
            source_id = source["id"]
            for dst, port in ((dst_ok, None), (dst_cut, proxy.port)):
                dest = api.create_pg_destination(c, api.pg_destination_config(dst, port=port))
                pipelines.append(api.create_pipeline(c, source, dest)["id"])
            for pid in pipelines:
                api.wait_status(c, "pipelines", pid, "Active", timeout=120)
        owners = {
            kind + ":" + unit: owner
            for kind, unit, owner in cluster.query("SELECT kind, unit_id, owner FROM leases")
        }
        assert set(owners) == {f"source:{source_id}", *(f"pipeline:{p}" for p in pipelines)}

        threads = [
            threading.Thread(target=probes.run, daemon=True),
            threading.Thread(target=_load, args=(src, stop_load), daemon=True),
            *(threading.Thread(target=w.run, daemon=True) for w in watchers),
        ]
        for t in threads:
            t.start()
        wait_until(lambda: all(w.seen >= 5 for w in watchers), 120, what="probes in both")
        t0 = time.time()
        time.sleep(10)  # baseline: both destinations up
        t1 = time.time()
        proxy.cut()
        time.sleep(OUTAGE)
        t2 = time.time()
        behind = probes.last()
        proxy.restore()
        wait_until(lambda: watchers[1].seen >= behind, 180, interval=0.2, what="catch-up")
        caught_up = time.time() - t2

        before, during = watchers[0].between(t0, t1), watchers[0].between(t1, t2)
        assert before and during
        assert not watchers[1].between(t1 + 5, t2), "the cut destination still received rows"
        med_before, med_during = statistics.median(before), statistics.median(during)
        print(
            f"unaffected pipeline latency (s): before median {med_before:.2f} max "
            f"{max(before):.2f}; during the {OUTAGE:.0f}s outage median {med_during:.2f} "
            f"max {max(during):.2f} ({len(during)} probes); "
            f"cut pipeline caught up {caught_up:.1f}s after the restore; "
            f"lease owners {sorted(owners.items())}"
        )
        # Without log mode the unaffected pipeline would stall for the whole outage.
        assert med_during <= max(3 * med_before, 3.0), (med_before, med_during)
        assert max(during) < max(OUTAGE / 2, 3 * max(before)), (max(before), max(during))
    finally:
        stop_load.set()
        probes.stop.set()
        for t in threads[:2]:
            t.join(30)
    try:
        expected = workload.checksum(src)
        probe_sum = pg.table_checksum(src, "public.probe", "id, at", "id")
        for dst in (dst_ok, dst_cut):
            wait_until(
                lambda d=dst: workload.checksum(d) == expected,
                180,
                interval=1,
                what=f"{dst} to equal {src} {expected}",
            )
            wait_until(
                lambda d=dst: pg.table_checksum(d, "public.probe", "id, at", "id") == probe_sum,
                60,
                interval=1,
                what=f"{dst} probes to equal the source's",
            )
        topics = kafka.admin().list_topics(timeout=10).topics
        assert f"tideflow.{source_id}.public.items" in topics
        # Replay: the cut pipeline, paused, loses its destination tables and is rewound to the
        # start of the log; resumed, it rebuilds them from the log alone.
        with cluster.api.client() as c:
            assert c.post(f"/pipelines/{pipelines[1]}/pause").status_code == 200
            api.wait_status(c, "pipelines", pipelines[1], "Paused", timeout=60)
            with psycopg.connect(pg.dsn(dst_cut), autocommit=True) as conn:
                conn.execute("TRUNCATE public.items, public.probe")
            store = Store(pg.url(cluster.meta))
            try:
                position = replay.rewind(store, kafka.BOOTSTRAP, pipelines[1])
            finally:
                store.dispose()
            assert position["offsets"]
            started = time.monotonic()
            assert c.post(f"/pipelines/{pipelines[1]}/resume").status_code == 200
            wait_until(
                lambda: (
                    workload.checksum(dst_cut) == expected
                    and pg.table_checksum(dst_cut, "public.probe", "id, at", "id") == probe_sum
                ),
                180,
                interval=1,
                what=f"{dst_cut} rebuilt from the log",
            )
            print(f"replay from the start of the log: {time.monotonic() - started:.1f}s")
    finally:
        for watcher in watchers:
            watcher.stop.set()
        proxy.stop()
        for worker in cluster.workers.values():
            worker.stop()
        for name in (src, dst_ok, dst_cut):
            pg.drop_database(name)


def _committed(group: str, topic: str) -> int:
    """The group's committed offset on ``topic`` (negative: none, the group is gone)."""
    client = kafka.admin()
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])
    got = client.list_consumer_group_offsets([request])[group].result(30)
    return int(got.topic_partitions[0].offset)


def _shown(c: Any, pipeline_id: str) -> tuple[str, str]:
    row = c.get(f"/pipelines/{pipeline_id}").json()["result"][0]
    return str(row["connector_status"]), str(row.get("connector_status_message") or "")


@pytest.mark.timeout(600)
def test_a_pipeline_behind_the_log_start_is_broken_and_deletes_clean_the_log(
    cluster: Cluster,
) -> None:
    """Invariant 5 in log mode, then cleanup on delete.

    A paused pipeline whose next offset was removed from its topic (what ``retention.ms`` does;
    the broker checks retention only every 5 minutes, so ``delete_records`` moves the log
    start the same way) shows Broken with the topic, partition and lost offsets, writes
    nothing past the gap, and runs again once rewound. Deleting the pipelines then removes
    their consumer groups, and deleting the source its topics.
    """
    src, dst_a, dst_b = (pg.create_database(p) for p in ("src", "dsta", "dstb"))
    source_id, pipelines = "", []
    try:
        workload.create_schema(src)
        with cluster.api.client() as c:
            source = api.create_pg_source(c, api.pg_source_config(src))
            source_id = source["id"]
            for dst in (dst_a, dst_b):
                dest = api.create_pg_destination(c, api.pg_destination_config(dst))
                pipelines.append(api.create_pipeline(c, source, dest)["id"])
            for pid in pipelines:
                api.wait_status(c, "pipelines", pid, "Active", timeout=120)
            topic = f"tideflow.{source_id}.public.items"
            workload.insert_range(src, 1, 100)
            for dst in (dst_a, dst_b):
                wait_until(lambda d=dst: workload.checksum(d)[0] == 100, 120, what=f"{dst} 100")

            # The second pipeline pauses; the first keeps the log written.
            assert c.post(f"/pipelines/{pipelines[1]}/pause").status_code == 200
            api.wait_status(c, "pipelines", pipelines[1], "Paused", timeout=60)
            workload.insert_range(src, 101, 100)
            wait_until(lambda: workload.checksum(dst_a)[0] == 200, 120, what=f"{dst_a} 200")
            admin = kafka.admin()
            end = admin.list_offsets({TopicPartition(topic, 0): OffsetSpec.latest()})
            log_end = next(iter(end.values())).result(30).offset
            (position,) = cluster.query(
                "SELECT position FROM checkpoints WHERE unit = %s", f"pipeline:{pipelines[1]}/log"
            )[0]
            paused_at = int(position["offsets"][f"{topic}:0"])
            assert 0 < paused_at < log_end
            for f in admin.delete_records([TopicPartition(topic, 0, log_end)]).values():
                assert f.result(30).low_watermark == log_end

            assert c.post(f"/pipelines/{pipelines[1]}/resume").status_code == 200
            state, message = wait_until(
                lambda: (s := _shown(c, pipelines[1]))[0] == "Broken" and s,
                120,
                interval=0.5,
                what="the paused pipeline to report the gap",
            )
            print(f"pipeline behind the log start: {state}: {message}")
            assert f"topic {topic} partition 0" in message
            assert f"offsets {paused_at} to {log_end - 1} were deleted" in message
            assert "re-snapshot" in message and "replay" in message
            assert workload.checksum(dst_b)[0] == 100, "nothing past the gap may be written"

            # Accepting the loss: rewound to what the log holds, it runs again.
            assert c.post(f"/pipelines/{pipelines[1]}/pause").status_code == 200
            api.wait_status(c, "pipelines", pipelines[1], "Paused", timeout=90)
            store = Store(pg.url(cluster.meta))
            try:
                assert replay.rewind(store, kafka.BOOTSTRAP, pipelines[1])["offsets"] == {
                    f"{topic}:0": log_end
                }
            finally:
                store.dispose()
            assert c.post(f"/pipelines/{pipelines[1]}/resume").status_code == 200
            api.wait_status(c, "pipelines", pipelines[1], "Active", timeout=120)

            # Cleanup on delete: groups once the pipelines are gone, then the topics.
            for pid in pipelines:
                assert c.delete(f"/pipelines/{pid}").status_code == 200
            for pid in pipelines:
                wait_until(
                    lambda p=pid: _committed(group_id(p), topic) < 0,
                    90,
                    interval=1,
                    what=f"the consumer group of deleted pipeline {pid} to be gone",
                )
            assert topic in kafka.admin().list_topics(timeout=10).topics
            assert c.delete(f"/sources/{source_id}").status_code == 200
            wait_until(
                lambda: (
                    not [
                        t
                        for t in kafka.admin().list_topics(timeout=10).topics
                        if t.startswith(f"tideflow.{source_id}.")
                    ]
                ),
                90,
                interval=1,
                what=f"the topics of deleted source {source_id} to be gone",
            )
    finally:
        for worker in cluster.workers.values():
            worker.stop()
        if source_id:
            kafka.delete_topics_with_prefix(f"tideflow.{source_id}.")
        for name in (src, dst_a, dst_b):
            pg.drop_database(name)
