"""A cluster under test: an API process and `tideflow worker` processes on a fresh Postgres
metadata database (the cluster end-to-end tests, tests/e2e/test_cluster*.py)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from tests.support import kafka, pg
from tests.support.server import Server

SECRET = "cluster-test-secret-key"


@dataclass
class WorkerProc:
    """One `tideflow worker` process; ``start`` again after a kill or stop starts a new one
    with a new log file (``logs`` keeps them all, ``tail`` shows their ends)."""

    worker_id: str
    data_dir: Path
    database_url: str
    proc: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)

    def start(self) -> WorkerProc:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.data_dir / f"worker-{len(self.logs)}.log"
        self.logs.append(log_path)
        env = {
            **os.environ,
            "TIDEFLOW_SECRET_KEY": SECRET,
            "TIDEFLOW_LOG_LEVEL": "INFO",
        }
        cmd = [
            sys.executable,
            "-m",
            "tideflow.cli.main",
            "worker",
            "--id",
            self.worker_id,
            "--database-url",
            self.database_url,
            "--data-dir",
            str(self.data_dir),
        ]
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.kill9()

    def tail(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.logs if p.exists())


@dataclass
class Cluster:
    """The metadata database ``meta``, the API server and the workers by id."""

    meta: str
    api: Server
    workers: dict[str, WorkerProc]

    def query(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(pg.dsn(self.meta), autocommit=True) as conn:
            return list(conn.execute(sql, args).fetchall())

    def owner(self, unit_id: str, kind: str = "source") -> tuple[str, int]:
        rows = self.query(
            "SELECT owner, generation FROM leases WHERE kind = %s AND unit_id = %s",
            kind,
            unit_id,
        )
        return (rows[0][0], int(rows[0][1])) if rows else ("", 0)

    def held_by(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for owner, unit in self.query(
            "SELECT owner, unit_id FROM leases WHERE kind = 'source' AND expires_at > now()"
        ):
            out.setdefault(owner, []).append(unit)
        return out


def drop_logs(meta: str) -> None:
    """Delete the log-mode topics and consumer groups of the sources and pipelines in ``meta``."""
    with contextlib.suppress(psycopg.Error), psycopg.connect(pg.dsn(meta)) as conn:
        sources = [r[0] for r in conn.execute("SELECT id FROM sources").fetchall()]
        pipelines = [r[0] for r in conn.execute("SELECT id FROM pipelines").fetchall()]
        for sid in sources:
            kafka.delete_topics_with_prefix(f"tideflow.{sid}.")
        if pipelines:
            client = kafka.admin()  # kept alive until the futures resolve
            groups = [f"tideflow-pipeline-{pid}" for pid in pipelines]
            for future in client.delete_consumer_groups(groups, request_timeout=30).values():
                with contextlib.suppress(Exception):
                    future.result(timeout=40)


@contextlib.contextmanager
def running(tmp_path: Path, worker_ids: Iterable[str], setup_sql: str = "") -> Iterator[Cluster]:
    """Start the API server, run ``setup_sql`` on the metadata database (e.g. an audit trigger),
    then start one worker per id (data under ``tmp_path / id``). On exit every worker and the
    server are stopped, the log-mode topics and consumer groups deleted and the database dropped,
    whatever started before a failure included."""
    meta = pg.create_database("tfmeta")
    url = pg.url(meta)
    srv = Server(
        tmp_path / "api", database_url=url, worker=False, extra_env={"TIDEFLOW_SECRET_KEY": SECRET}
    )
    workers = {w: WorkerProc(w, tmp_path / w, url) for w in worker_ids}
    try:
        srv.start()
        if setup_sql:
            with psycopg.connect(pg.dsn(meta), autocommit=True) as conn:
                conn.execute(setup_sql)
        for w in workers.values():
            w.start()
        yield Cluster(meta, srv, workers)
    finally:
        for w in workers.values():
            w.stop()
        srv.stop()
        drop_logs(meta)
        pg.drop_database(meta)
