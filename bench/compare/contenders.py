"""The contenders: Tideflow (a live ``tideflow serve``), Debezium Server (the official
distribution run with ``java``) and ``pg_recvlogical`` (the replication limit).

Tideflow and Debezium both write the Debezium envelope as JSON to the same Kafka broker with
the same durability (``acks=all``, idempotent producer, lz4), each into its own topic that the
harness creates beforehand with broker-side (LogAppendTime) timestamps.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg
from tests.support import api, pg
from tests.support.server import Server, free_port, wait_until

from bench.run import KAFKA

ROOT = Path(__file__).resolve().parents[2]


class Sampler:
    """Peak RSS (MB, the process and its children) and CPU seconds of a process, every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = 0
        self.cpu0 = self._cpu()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _procs(self) -> list[psutil.Process]:
        try:
            return [self.proc, *self.proc.children(recursive=True)]
        except psutil.Error:
            return []

    def _cpu(self) -> float:
        total = 0.0
        for p in self._procs():
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            rss = 0
            for p in self._procs():
                with contextlib.suppress(psutil.Error):
                    rss += p.memory_info().rss
            self.peak = max(self.peak, rss)
            self._cpu_last = self._cpu()
            self._stop.wait(0.05)

    def mark(self) -> None:
        """Remember the CPU time now: the start of the steady state (first message out)."""
        self.cpu_mark = self._cpu()

    def steady_cpu(self) -> float:
        """CPU seconds since ``mark`` (since the start when it was never called)."""
        return round(self._cpu_end - getattr(self, "cpu_mark", self.cpu0), 2)

    def stop(self) -> tuple[float, float]:
        """(peak RSS MB, CPU seconds used since the sampler started)."""
        self._stop.set()
        self._thread.join()
        cpu = self._cpu() or getattr(self, "_cpu_last", self.cpu0)
        self._cpu_end = cpu
        return round(self.peak / 2**20, 1), round(cpu - self.cpu0, 2)


class SlotWatch:
    """When a walsender first holds ``slot`` (epoch seconds): the contender began reading.

    Rates are counted from there to the last message at the sink, for every contender alike:
    process start-up (a JVM's 30-45 s here) is left out, and a contender that buffers before
    its first message gains nothing from it."""

    def __init__(self, db: str, slot: str) -> None:
        self.db, self.slot = db, slot
        self.active_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        with psycopg.connect(pg.dsn(self.db), autocommit=True) as conn:
            while not self._stop.is_set():
                row = conn.execute(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)
                ).fetchone()
                if row and row[0]:
                    self.active_at = time.time()
                    return
                self._stop.wait(0.02)

    def stop(self) -> float | None:
        self._stop.set()
        self._thread.join()
        return self.active_at


class Tideflow:
    """One ``tideflow serve`` (API + embedded worker); a pipeline per measured run."""

    name = "tideflow"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.server: Server | None = None
        self.restart()

    def restart(self) -> None:
        """A fresh server process (peak RSS is measured from a clean start)."""
        self.close()
        self.server = Server(self.work / f"tideflow-{time.time_ns()}", worker=True).start()
        self.client = self.server.client()

    @property
    def pid(self) -> int:
        assert self.server is not None and self.server.proc is not None
        return self.server.proc.pid

    def topic(self, prefix: str, table: str) -> str:
        return f"{prefix}.{table}"

    def start(
        self,
        db: str,
        table: str,
        prefix: str,
        *,
        slot: str | None = None,
        publication: str | None = None,
        destination: dict[str, Any] | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """A Postgres source into ``destination`` (default: Kafka topics ``<prefix>.<table>``);
        returns once the pipeline and the source are Active."""
        config = api.pg_source_config(db, table, **extra)
        if slot:
            config["slot.name"] = slot
        if publication:
            config["publication.name"] = publication
        return self.create("postgresql", config, prefix, destination)

    def create(
        self,
        connector: str,
        config: dict[str, Any],
        prefix: str,
        destination: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Source ``connector`` with ``config``, a destination (Kafka by default) and a pipeline
        between them; returns once the pipeline and the source are Active."""
        source = api.create(
            self.client,
            "/sources",
            {"name": api.unique("cmpsrc"), "connector": connector, "config": config},
        )
        dest_body = destination or {
            "connector": "kafka",
            "config": {"kafka.sink.bootstrap": KAFKA, "topic.prefix": f"{prefix}."},
        }
        dest = api.create(self.client, "/destinations", {"name": api.unique("cmpdst"), **dest_body})
        pipe = api.create_pipeline(self.client, source, dest)
        api.wait_status(self.client, "pipelines", pipe["id"], "Active")
        api.wait_status(self.client, "sources", source["id"], "Active")
        return {"source": source, "destination": dest, "pipeline": pipe}

    def pause(self, run: dict[str, Any]) -> None:
        r = self.client.post(f"/sources/{run['source']['id']}/pause")
        assert r.status_code == 200, r.text
        api.wait_status(self.client, "sources", run["source"]["id"], "Paused")

    def resume(self, run: dict[str, Any]) -> None:
        r = self.client.post(f"/sources/{run['source']['id']}/resume")
        assert r.status_code == 200, r.text

    def snapshot(self, run: dict[str, Any]) -> None:
        r = self.client.post("/sources/snapshot", json={"source_id": run["source"]["id"]})
        assert r.status_code == 202, r.text

    def snapshot_done(self, run: dict[str, Any]) -> bool:
        body = self.client.get(f"/sources/{run['source']['id']}/snapshot").json()
        topics = body.get("topics") or []
        return bool(topics) and all(t["status"] == "completed" for t in topics)

    def stop(self, run: dict[str, Any]) -> None:
        """Delete the pipeline, the source (its slot and publication if it made them) and the
        destination, so idle pipelines do not share the CPU with the next run."""
        self.client.delete(f"/pipelines/{run['pipeline']['id']}")
        wait_until(
            lambda: (
                self.client.get(f"/pipelines/{run['pipeline']['id']}").status_code == 404
                or api.status(self.client, "pipelines", run["pipeline"]["id"]) == "Gone"
            ),
            60,
            what="pipeline deleted",
        )
        self.client.delete(f"/sources/{run['source']['id']}", params={"force": True})
        self.client.delete(f"/destinations/{run['destination']['id']}")

    def close(self) -> None:
        if self.server is not None:
            self.client.close()
            self.server.stop()
            self.server = None


# Debezium's documented throughput knobs, raised from their defaults (2048 / 8192 / 500 ms;
# producer linger 0 ms, 16 KB batches, no compression) as its performance guidance suggests. A
# 10 ms poll interval also lowers its latency. The 3.x Kafka sink sends a whole batch before it
# waits for the acknowledgements, so linger and batch size work as in any producer (2.7.3's
# sink waited for each record: there linger.ms must stay 0).
DEBEZIUM_TUNING = {
    "debezium.source.max.batch.size": "20480",
    "debezium.source.max.queue.size": "81920",
    "debezium.source.poll.interval.ms": "10",
    "debezium.sink.kafka.producer.linger.ms": "10",
    "debezium.sink.kafka.producer.batch.size": "262144",
    "debezium.sink.kafka.producer.compression.type": "lz4",
}


# Initial snapshot: rows fetched per round trip of the snapshot query raised to the batch size
# (default 10,240); snapshot.max.threads parallelises across tables only, so with one table it
# changes nothing and stays 1.
DEBEZIUM_SNAPSHOT_TUNING = {
    "debezium.source.snapshot.fetch.size": "20480",
    "debezium.source.snapshot.max.threads": "1",
}


class Debezium:
    """Debezium Server from the official distribution (scripts/services/debezium.sh), one JVM
    per measured run, configured by a generated conf/application.properties."""

    name = "debezium"

    def __init__(self, work: Path) -> None:
        self.work = work
        self.home = Path(
            subprocess.run(
                ["bash", str(ROOT / "scripts/services/debezium.sh")],
                check=True,
                capture_output=True,
                text=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        self.version = self.home.parent.name.removeprefix("debezium-server-")
        self.java = (self.home.parent / "java").read_text().strip()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: Path | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def topic(self, prefix: str, table: str) -> str:
        return f"{prefix}.{table}"

    def properties(
        self,
        db: str,
        table: str,
        prefix: str,
        *,
        slot: str,
        publication: str,
        snapshot_mode: str,
        offsets: Path,
    ) -> dict[str, str]:
        """The Postgres connector (pgoutput) on ``slot`` and ``publication``."""
        return {
            **self.common(prefix, snapshot_mode, offsets),
            "debezium.source.connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "debezium.source.database.hostname": pg.HOST,
            "debezium.source.database.port": str(pg.PORT),
            "debezium.source.database.user": pg.USER,
            "debezium.source.database.password": pg.PASSWORD,
            "debezium.source.database.dbname": db,
            "debezium.source.table.include.list": table,
            "debezium.source.plugin.name": "pgoutput",
            "debezium.source.slot.name": slot,
            "debezium.source.publication.name": publication,
            "debezium.source.publication.autocreate.mode": "filtered",
        }

    def common(self, prefix: str, snapshot_mode: str, offsets: Path) -> dict[str, str]:
        """Sink, formats and tuning shared by every connector."""
        return {
            "debezium.sink.type": "kafka",
            "debezium.sink.kafka.producer.bootstrap.servers": KAFKA,
            "debezium.sink.kafka.producer.key.serializer": (
                "org.apache.kafka.common.serialization.StringSerializer"
            ),
            "debezium.sink.kafka.producer.value.serializer": (
                "org.apache.kafka.common.serialization.StringSerializer"
            ),
            "debezium.sink.kafka.producer.acks": "all",
            "debezium.sink.kafka.producer.enable.idempotence": "true",
            "debezium.source.offset.storage.file.filename": str(offsets),
            # offset.flush.interval.ms stays at its default (60 s): flushing offsets after every
            # batch (0, as in the distribution's example file) would cost Debezium throughput.
            "debezium.source.topic.prefix": prefix,
            "debezium.source.snapshot.mode": snapshot_mode,
            # Same representations as Tideflow's envelope: decimals as exact strings, no
            # Kafka Connect schema in every message.
            "debezium.source.decimal.handling.mode": "string",
            "debezium.format.key": "json",
            "debezium.format.value": "json",
            "debezium.format.key.schemas.enable": "false",
            "debezium.format.value.schemas.enable": "false",
            "quarkus.http.port": str(free_port()),
            "quarkus.log.console.json": "false",
            "quarkus.log.level": "INFO",
            **DEBEZIUM_TUNING,
        }

    def start(self, props: dict[str, str]) -> None:
        run_dir = self.work / f"debezium-{time.time_ns()}"
        (run_dir / "conf").mkdir(parents=True)
        (run_dir / "conf" / "application.properties").write_text(
            "".join(f"{k}={v}\n" for k, v in props.items())
        )
        runner = next(self.home.glob("debezium-server-*runner.jar"))
        classpath = os.pathsep.join([str(runner), str(run_dir / "conf"), str(self.home / "lib/*")])
        self.log = run_dir / "debezium.log"
        with open(self.log, "wb") as log:
            # The distribution's run.sh, minus its relative paths: same main class, no JVM
            # options (JAVA_OPTS is empty by default), so the JVM sizes its heap itself.
            self.proc = subprocess.Popen(
                [self.java, "-cp", classpath, "io.debezium.server.Main"],
                cwd=run_dir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def recvlogical(db: str, slot: str, publication: str, end_lsn: str) -> tuple[float, float, int]:
    """``pg_recvlogical`` from ``slot`` until ``end_lsn``, its output read and dropped.

    Returns (epoch seconds of the first byte received, of the last, exit code). The output goes
    through a pipe rather than to /dev/null only to timestamp it; reading it in 1 MB chunks
    costs a few system calls per MB."""
    cmd = [
        "pg_recvlogical",
        "-h", pg.HOST, "-p", str(pg.PORT), "-U", pg.USER, "-d", db,
        "-S", slot, "--start", "--no-loop",
        "-o", "proto_version=1", "-o", f"publication_names={publication}",
        "-E", end_lsn, "-f", "-",
    ]  # fmt: skip
    env = {**os.environ, "PGPASSWORD": pg.PASSWORD}
    began = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    first = 0.0
    while os.read(fd, 1 << 20):
        if not first:
            first = time.time()
    ended = time.time()
    rc = proc.wait(60)
    return first or began, ended, rc
