"""A throwaway second Postgres cluster on a loopback port, for tests that need other settings.

The cluster lives in a temporary directory (``initdb`` as the ``postgres`` system user, since
the server refuses to run as root), listens on 127.0.0.1 only, and is stopped and deleted on
exit. Superuser ``postgres`` / password ``postgres``, like the main test server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

BINDIR = Path(os.environ.get("TIDEFLOW_PG_BINDIR", "/usr/lib/postgresql/15/bin"))
PASSWORD = "postgres"


class ClusterUnavailable(RuntimeError):
    """Raised when this machine cannot create a cluster (no binaries, not root, ...)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _as_postgres(*args: str) -> subprocess.CompletedProcess[str]:
    command = list(args)
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@contextlib.contextmanager
def throwaway_cluster(**settings: str) -> Iterator[int]:
    """Start a cluster with these ``postgresql.conf`` settings; yield its port."""
    if not (BINDIR / "initdb").exists():
        raise ClusterUnavailable(f"no Postgres binaries in {BINDIR}")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        raise ClusterUnavailable("running as root without runuser")
    workdir = Path(tempfile.mkdtemp(prefix="tfcluster_"))
    datadir = workdir / "data"
    pwfile = workdir / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres", "postgres")
        shutil.chown(pwfile, "postgres", "postgres")
    port = free_port()
    try:
        init = _as_postgres(
            str(BINDIR / "initdb"), "-D", str(datadir), "-U", "postgres",
            "--auth=scram-sha-256", f"--pwfile={pwfile}", "--no-sync",
        )  # fmt: skip
        if init.returncode != 0:
            raise ClusterUnavailable(f"initdb failed: {init.stderr.strip()}")
        options = {
            "port": str(port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(workdir),
            "fsync": "off",
            "shared_buffers": "16MB",
            **settings,
        }
        conf = "".join(f"{k} = '{v}'\n" for k, v in options.items())
        with open(datadir / "postgresql.auto.conf", "a") as f:
            f.write(conf)
        start = _as_postgres(
            str(BINDIR / "pg_ctl"), "-D", str(datadir), "-l", str(workdir / "log"), "-w", "start"
        )
        if start.returncode != 0:
            log = (workdir / "log").read_text() if (workdir / "log").exists() else ""
            raise ClusterUnavailable(f"pg_ctl start failed: {start.stderr.strip()} {log[-500:]}")
        yield port
    finally:
        if (datadir / "postmaster.pid").exists():
            _as_postgres(str(BINDIR / "pg_ctl"), "-D", str(datadir), "-m", "immediate", "stop")
        shutil.rmtree(workdir, ignore_errors=True)
