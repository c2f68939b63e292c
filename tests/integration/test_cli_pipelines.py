"""The real `tideflow pipelines status|metrics` CLI against a live server running a pipeline."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import api, pg, workload
from tests.support.server import ADMIN_ID, ADMIN_SECRET, Server, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[Server, dict[str, Any]]]:
    srv = Server(
        tmp_path / "srv", worker=True, extra_env={"TIDEFLOW_METRICS_INTERVAL_SECONDS": "1"}
    )
    srv.start()
    try:
        with pg.temp_database("clisrc") as src, pg.temp_database("clidst") as dst:
            workload.create_schema(src)
            with srv.client() as c:
                source = api.create_pg_source(c, api.pg_source_config(src))
                dest = api.create_pg_destination(c, api.pg_destination_config(dst))
                pipe = api.create_pipeline(c, source, dest)
                api.wait_status(c, "pipelines", pipe["id"], "Active")
                workload.insert_range(src, 1, 40)

                def written() -> bool:
                    got = c.get(f"/pipelines/{pipe['id']}/metrics").json()["data"]
                    return bool(got["recordsWritten"] == 40 and got["recordsLag"] == 0)

                wait_until(written, 60, what="40 records written")
            yield srv, pipe
    finally:
        srv.stop()


def tideflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("TIDEFLOW_")}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "tideflow.cli.main", "pipelines", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_status_and_metrics(live: tuple[Server, dict[str, Any]]) -> None:
    srv, pipe = live
    token = srv.token()

    out = tideflow("status", env={"TIDEFLOW_URL": srv.url, "TIDEFLOW_TOKEN": token})
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if pipe["id"] in line)
    assert pipe["name"] in row and "Active" in row and "healthy" in row and " ms" in row
    assert row.rstrip(" │|").split()[-1] == "0"  # lag
    for header in ("name", "status", "health", "latency", "lag"):
        assert header in out.stdout

    out = tideflow(
        "metrics", pipe["name"], "--url", srv.url, "--client-id", ADMIN_ID, "--secret", ADMIN_SECRET
    )
    assert out.returncode == 0, out.stderr
    assert pipe["id"] in out.stdout and "records written" in out.stdout
    assert "40" in next(line for line in out.stdout.splitlines() if "records written" in line)

    out = tideflow(
        "metrics", pipe["id"], "--watch", "--interval", "0.3", "--count", "3",
        "--url", srv.url, "--token", token,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "refresh 3/3" in out.stdout and "healthy" in out.stdout

    out = tideflow("status", "--url", srv.url, "--token", "wrong")
    assert out.returncode == 1 and "HTTP 401" in out.stderr
    out = tideflow("metrics", "no-such-pipeline", "--url", srv.url, "--token", token)
    assert out.returncode == 1 and "no pipeline" in out.stderr
