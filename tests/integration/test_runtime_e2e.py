"""The runtime end to end: a real Postgres source into a Postgres and a Parquet destination.

The Worker runs in-process; sources, destinations and pipelines are rows inserted through the
store, as the control plane would. Correctness is checked by comparing contents (row-by-row
checksums, folded Parquet), never by counting log lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pyarrow.parquet as pq
import pytest

from tests.support import api, pg
from tests.support.server import wait_until
from tideflow.connectors.config import secret_keys
from tideflow.connectors.destinations.postgres.config import PostgresDestinationConfig
from tideflow.connectors.sources.postgres.config import PostgresSourceConfig
from tideflow.engine.batching import Limits
from tideflow.engine.checkpoints import Checkpoints
from tideflow.engine.config import RuntimeConfig
from tideflow.engine.worker import Worker
from tideflow.ids import new_id, new_stream_id
from tideflow.store.crypto import SecretBox, seal_config
from tideflow.store.db import Store
from tideflow.store.models.resources import Destination, Pipeline, Source
from tideflow.store.models.runtime import UnitStatus

pytestmark = pytest.mark.integration

COLUMNS = "id, name, amount, created, day, flag, doc, tags, blob, ratio, body"
SCHEMA = (
    "CREATE TABLE items (id bigint PRIMARY KEY, name text NOT NULL, amount numeric(12,2), "
    "created timestamptz, day date, flag boolean, doc jsonb, tags text[], blob bytea, "
    "ratio float8, body text)"
)
CONFIG = RuntimeConfig(
    limits=Limits(max_events=500, max_wait=0.05),
    reconcile_interval=0.1,
    retry_max=2.0,
    drain_timeout=20,
)


class Proxy:
    """A TCP forwarder to Postgres that can go down: an outage of one destination only."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        """Refuse new connections and cut the open ones (a server that went away)."""
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would not.
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
            c.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 1.0)
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except OSError:
            return
        finally:
            a.close()
            b.close()


@dataclass
class Setup:
    store: Store
    worker: Worker
    src_db: str
    dst_db: str
    files: Path
    source_id: str
    pg_pipeline: str
    files_pipeline: str
    slot: str
    proxy: Proxy

    def status(self, unit: str) -> tuple[str, str] | None:
        with self.store.session() as s:
            row = s.get(UnitStatus, unit)
            return (row.status, row.message) if row else None

    def set_state(self, pipeline_id: str, state: str) -> None:
        with self.store.session() as s:
            row = s.get(Pipeline, pipeline_id)
            assert row is not None
            row.desired_state = state

    def checkpoint(self, pipeline_id: str) -> int | None:
        pos = Checkpoints(self.store).load(f"pipeline:{pipeline_id}")
        return None if pos is None else int(pos["lsn"])


def sql(db: str, *statements: str) -> None:
    with psycopg.connect(pg.dsn(db), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def slot_flush_lsn(slot: str) -> int | None:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT confirmed_flush_lsn - '0/0' FROM pg_replication_slots WHERE slot_name = %s",
            (slot,),
        ).fetchone()
    return None if row is None else int(row[0])


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    with pg.temp_database("e2esrc") as src_db, pg.temp_database("e2edst") as dst_db:
        sql(src_db, SCHEMA, "ALTER TABLE items ALTER COLUMN body SET STORAGE EXTERNAL")
        store = Store(f"sqlite:///{tmp_path}/meta.db")
        store.migrate()
        box = SecretBox("e2e-secret")
        proxy = Proxy(pg.PORT)
        source_cfg = api.pg_source_config(src_db, **{"heartbeat.interval.ms": 1000})
        dest_cfg = api.pg_destination_config(dst_db, port=proxy.port)
        ids = {k: new_id() for k in ("src", "pgd", "fd", "p1", "p2")}
        with store.session() as s:
            s.add(
                Source(
                    id=ids["src"],
                    stream_id=new_stream_id(),
                    name="shop",
                    connector="postgresql",
                    config=seal_config(box, source_cfg, secret_keys(PostgresSourceConfig)),
                )
            )
            s.add(
                Destination(
                    id=ids["pgd"],
                    name="warehouse",
                    connector="postgresql",
                    config=seal_config(box, dest_cfg, secret_keys(PostgresDestinationConfig)),
                )
            )
            s.add(
                Destination(
                    id=ids["fd"],
                    name="lake",
                    connector="files",
                    config={"path.user.defined": str(tmp_path / "lake")},
                )
            )
            s.flush()
            for pid, did, name in (("p1", "pgd", "to-warehouse"), ("p2", "fd", "to-lake")):
                s.add(
                    Pipeline(
                        id=ids[pid],
                        name=name,
                        source_id=ids["src"],
                        destination_id=ids[did],
                        source_body={"topics": ["public.items"]},
                        destination_body={},
                    )
                )
        worker = Worker(store, box, worker_id="e2e", config=CONFIG)
        worker.start()
        setup: Setup | None = None
        try:
            setup = Setup(
                store,
                worker,
                src_db,
                dst_db,
                tmp_path / "lake",
                ids["src"],
                ids["p1"],
                ids["p2"],
                source_cfg["slot.name"],
                proxy,
            )
            # Changes are captured from the slot's creation on (no initial snapshot here).
            wait_until(
                lambda: setup.status(f"source:{ids['src']}") == ("Active", ""),
                timeout=60,
                what="source streaming",
            )
            yield setup
        finally:
            (setup.worker if setup is not None else worker).stop()  # a test may replace it
            proxy.down()
            store.dispose()


def workload(db: str, start: int, count: int) -> None:
    sql(
        db,
        f"INSERT INTO items SELECT g, 'item ' || g, g * 1.25, "
        f"'2024-01-01T00:00:00Z'::timestamptz + g * interval '1 minute', '2024-01-01'::date + g, "
        f"g % 2 = 0, jsonb_build_object('g', g, 'nested', jsonb_build_array(g, 'x')), "
        f"ARRAY['a', 'b' || g], decode(lpad(to_hex(g), 8, '0'), 'hex'), g / 7.0, "
        f"repeat(md5(g::text), 300) FROM generate_series({start}, {start + count - 1}) g",
        # unchanged TOAST: body is not sent by the source for these updates
        f"UPDATE items SET amount = amount * 2, tags = NULL WHERE id % 3 = 0 AND id >= {start}",
        f"DELETE FROM items WHERE id % 10 = 0 AND id >= {start}",
        f"UPDATE items SET name = 'renamed', doc = '{{\"x\": [1, 2]}}' WHERE id = {start + 6}",
        f"INSERT INTO items (id, name) VALUES ({start + count + 100}, 'nulls everywhere')",
    )


def checksum(db: str) -> tuple[int, str]:
    return pg.table_checksum(db, "items", COLUMNS, "id")


def converged(setup: Setup) -> bool:
    try:
        return checksum(setup.dst_db) == checksum(setup.src_db)
    except psycopg.Error:
        return False


def folded_parquet(root: Path) -> dict[int, dict[str, Any]]:
    table: dict[int, dict[str, Any]] = {}
    folder = root / "public.items"
    if not folder.exists():
        return table
    for name in sorted(os.listdir(folder)):
        for r in pq.read_table(folder / name).to_pylist():
            if r["op"] == "d":
                table.pop(r["before"]["id"], None)
            elif r["op"] == "t":
                table.clear()
            else:
                after = dict(r["after"])
                for col in r["__unchanged"] or []:
                    after[col] = table.get(after["id"], {}).get(col)
                table[after["id"]] = after
    return table


def source_rows(db: str) -> dict[int, dict[str, Any]]:
    with psycopg.connect(pg.dsn(db)) as conn:
        cur = conn.execute(f"SELECT {COLUMNS} FROM items ORDER BY id")
        names = [d.name for d in cur.description or []]
        return {r[0]: dict(zip(names, r, strict=True)) for r in cur.fetchall()}


def normalised(rows: dict[int, dict[str, Any]]) -> dict[int, dict[str, Any]]:
    out = {}
    for key, row in rows.items():
        r = dict(row)
        if isinstance(r.get("doc"), str):
            r["doc"] = json.loads(r["doc"])
        out[key] = r
    return out


def test_rows_appear_identically_in_postgres_and_parquet(setup: Setup) -> None:
    workload(setup.src_db, 1, 2000)
    wait_until(lambda: converged(setup), timeout=120, what="destination equals source")
    expected = normalised(source_rows(setup.src_db))
    wait_until(
        lambda: normalised(folded_parquet(setup.files)) == expected,
        timeout=60,
        what="Parquet folds to the source table",
    )
    # invariant 1 and 4: the slot follows the checkpoints, also when the tables go idle
    wait_until(
        lambda: (
            (cp := setup.checkpoint(setup.pg_pipeline)) is not None
            and slot_flush_lsn(setup.slot) == min(cp, setup.checkpoint(setup.files_pipeline) or 0)
        ),
        timeout=30,
        what="slot acknowledged at the checkpoints",
    )
    idle_from = slot_flush_lsn(setup.slot)
    sql(
        setup.src_db,
        "CREATE TABLE other (id int PRIMARY KEY)",
        "INSERT INTO other SELECT generate_series(1, 100)",
    )  # WAL the publication ignores
    wait_until(
        lambda: (slot_flush_lsn(setup.slot) or 0) > (idle_from or 0),
        timeout=60,
        what="idle slot advances",
    )
    metrics = setup.worker.metrics.snapshot()[f"pipeline:{setup.pg_pipeline}"]
    assert metrics["events_total"] >= 2000 and metrics["latency_ms"] is not None


def test_pause_resume_keeps_the_slot_and_loses_nothing(setup: Setup) -> None:
    workload(setup.src_db, 1, 300)
    wait_until(lambda: converged(setup), timeout=120, what="initial copy")
    setup.set_state(setup.pg_pipeline, "Paused")
    wait_until(
        lambda: setup.status(f"pipeline:{setup.pg_pipeline}") == ("Paused", ""),
        timeout=30,
        what="paused",
    )
    paused_at = setup.checkpoint(setup.pg_pipeline)
    assert paused_at is not None
    before = checksum(setup.dst_db)
    workload(setup.src_db, 1000, 300)
    wait_until(
        lambda: normalised(folded_parquet(setup.files)) == normalised(source_rows(setup.src_db)),
        timeout=60,
        what="the other pipeline keeps going",
    )
    assert checksum(setup.dst_db) == before  # paused: nothing written
    assert setup.checkpoint(setup.pg_pipeline) == paused_at
    flushed = slot_flush_lsn(setup.slot)
    assert flushed is not None and flushed <= paused_at  # the slot keeps what it needs
    setup.set_state(setup.pg_pipeline, "Active")
    wait_until(lambda: converged(setup), timeout=120, what="caught up after resume")


def test_source_pause_closes_connections_and_resumes(setup: Setup) -> None:
    workload(setup.src_db, 1, 100)
    wait_until(lambda: converged(setup), timeout=120)
    with setup.store.session() as s:
        row = s.get(Source, setup.source_id)
        assert row is not None
        row.desired_state = "Paused"
    wait_until(lambda: setup.status(f"source:{setup.source_id}") == ("Paused", ""), timeout=30)
    wait_until(lambda: slot_active(setup.slot) is False, timeout=30, what="slot released")
    workload(setup.src_db, 500, 100)
    with setup.store.session() as s:
        row = s.get(Source, setup.source_id)
        assert row is not None
        row.desired_state = "Active"
    wait_until(lambda: converged(setup), timeout=120, what="resumed without loss")


def slot_active(slot: str) -> bool | None:
    with psycopg.connect(pg.dsn(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
    return None if row is None else bool(row[0])


def test_destination_outage_is_recovered_without_loss(setup: Setup) -> None:
    workload(setup.src_db, 1, 200)
    wait_until(lambda: converged(setup), timeout=120, what="initial copy")
    setup.proxy.down()
    workload(setup.src_db, 1000, 500)
    unit = f"pipeline:{setup.pg_pipeline}"
    wait_until(
        lambda: (st := setup.status(unit)) and "retrying" in st[1],
        timeout=60,
        what="retrying status",
    )
    outage = float(os.environ.get("TIDEFLOW_E2E_OUTAGE_SECONDS", "12"))
    deadline = time.monotonic() + outage
    while time.monotonic() < deadline:  # the outage lasts this long; meanwhile nothing moves
        assert not converged(setup)
        time.sleep(0.5)
    setup.proxy.up()
    wait_until(lambda: converged(setup), timeout=120, what="recovered after the outage")
    wait_until(lambda: setup.status(unit) == ("Active", ""), timeout=30, what="message cleared")


def test_a_restarted_worker_resumes_from_its_checkpoints(setup: Setup) -> None:
    workload(setup.src_db, 1, 200)
    wait_until(lambda: converged(setup), timeout=120)
    setup.worker.stop()
    workload(setup.src_db, 1000, 200)
    worker = Worker(setup.store, setup.worker.secrets, worker_id="e2e-2", config=CONFIG)
    setup.worker = worker
    worker.start()
    wait_until(lambda: converged(setup), timeout=120, what="caught up after a restart")


def test_drop_source_upstream_after_stop_removes_slot_and_publication(setup: Setup) -> None:
    from tideflow.engine.lifecycle import drop_source_upstream

    assert slot_active(setup.slot) is True
    with setup.store.session() as s:  # what the control plane does before deleting the row
        for pid in (setup.pg_pipeline, setup.files_pipeline):
            pipe = s.get(Pipeline, pid)
            assert pipe is not None
            s.delete(pipe)
        s.flush()
        row = s.get(Source, setup.source_id)
        assert row is not None
        row.desired_state = "Stopped"
    drop_source_upstream(setup.store, setup.worker.secrets, setup.source_id, False)
    assert slot_active(setup.slot) is None  # gone
    with psycopg.connect(pg.dsn(setup.src_db)) as conn:
        assert conn.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)
