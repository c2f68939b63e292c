"""Soak: one Postgres source streaming to Postgres and Parquet under continuous load while
random faults hit it — `kill -9` of the server, the destination cut off, the source paused,
the pipeline stopped and started. Nothing may be lost (invariants 1 to 3): at the end the
destination equals the source (checksum) and the Parquet change log folds to the source table.

`make test` runs TIDEFLOW_CHAOS_ROUNDS=2 rounds (the short version); `make chaos` runs 20.
"""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.test_pg_pipeline import (
    assert_converges,
    fold_parquet,
    source_ids_and_t,
    start_pipeline,
)
from tests.support import api, pg, workload
from tests.support.proxy import Proxy
from tests.support.server import Server, wait_until

pytestmark = pytest.mark.integration

ROUNDS = int(os.environ.get("TIDEFLOW_CHAOS_ROUNDS", "2"))
SEED = int(os.environ.get("TIDEFLOW_CHAOS_SEED", str(random.randrange(1 << 30))))


def _post(server: Server, path: str) -> None:
    with server.client() as c:
        r = c.post(path)
        assert r.status_code == 200, f"{path}: {r.status_code} {r.text}"


def test_random_faults_under_load_lose_nothing(engine_server: Server, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    print(f"chaos seed {SEED}, {ROUNDS} rounds")  # rerun a failure with TIDEFLOW_CHAOS_SEED
    proxy = Proxy(pg.HOST, pg.PORT).start()
    files = tmp_path / "lake"
    with pg.temp_database("src") as src, pg.temp_database("dst") as dst:
        workload.create_schema(src)
        units = start_pipeline(engine_server, src, dst, dest_port=proxy.port, files=files)
        source_id, pipe_id = units["source"]["id"], units["pipeline"]["id"]

        def kill9() -> None:
            engine_server.kill9()
            engine_server.start()

        def cut_destination() -> None:
            proxy.cut()
            threading.Event().wait(rng.uniform(2.0, 8.0))
            proxy.restore()

        def pause_source() -> None:
            _post(engine_server, f"/sources/{source_id}/pause")
            threading.Event().wait(rng.uniform(1.0, 5.0))
            _post(engine_server, f"/sources/{source_id}/resume")

        def stop_pipeline() -> None:
            _post(engine_server, f"/pipelines/{pipe_id}/stop")
            with engine_server.client() as c:
                api.wait_status(c, "pipelines", pipe_id, "Stopped")
            _post(engine_server, f"/pipelines/{pipe_id}/start")

        faults: list[Callable[[], None]] = [kill9, cut_destination, pause_source, stop_pipeline]
        done = threading.Event()

        def load() -> None:
            key = 1
            while not done.is_set():
                workload.run_pgbench(src, seconds=3)
                workload.insert_range(src, 1_000_000 + key, 2_000)  # a larger transaction
                key += 2_000

        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        try:
            for n in range(ROUNDS):
                threading.Event().wait(rng.uniform(0.5, 3.0))
                fault = rng.choice(faults)
                print(f"round {n + 1}: {fault.__name__}")
                fault()
        finally:
            done.set()
            loader.join(timeout=60)
            proxy.restore()
        try:
            assert_converges(src, dst, timeout=240)
            expected = source_ids_and_t(src)
            wait_until(
                lambda: {k: v["t"] for k, v in fold_parquet(files).items()} == expected,
                120,
                what="parquet to fold to the source table",
            )
        finally:
            proxy.stop()
