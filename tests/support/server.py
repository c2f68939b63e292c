"""Run `tideflow serve` as a real process for tests (kill -9 included)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ADMIN_ID = "test-admin"
ADMIN_SECRET = "test-admin-secret-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.1, what: str = "") -> Any:
    """Poll ``predicate`` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # the condition may not be checkable yet
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}: {last!r}")


@dataclass
class Server:
    data_dir: Path
    database_url: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    worker: bool = True
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            TIDEFLOW_ADMIN_CLIENT_ID=ADMIN_ID,
            TIDEFLOW_ADMIN_SECRET=ADMIN_SECRET,
            TIDEFLOW_DATA_DIR=str(self.data_dir),
            TIDEFLOW_LOG_LEVEL="INFO",
        )
        if self.database_url:
            env["TIDEFLOW_DATABASE_URL"] = self.database_url
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 60.0) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / "server.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        cmd = [
            sys.executable,
            "-m",
            "tideflow.cli.main",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]
        if not self.worker:
            cmd.append("--no-worker")
        self.proc = subprocess.Popen(cmd, env=self.env(), stdout=log, stderr=log)
        wait_until(self._healthy, timeout, what=f"server on {self.url} (log {self.log_path})")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log_tail()}")
        # A server catching up after kill -9 on a loaded machine can take seconds to answer.
        return httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def token(self, client_id: str = ADMIN_ID, secret: str = ADMIN_SECRET) -> str:
        r = httpx.post(
            f"{self.url}/auth/access-token", json={"client_id": client_id, "secret": secret}
        )
        r.raise_for_status()
        return str(r.json()["accessToken"])

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token()}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)
