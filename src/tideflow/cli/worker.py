"""``tideflow worker``: a cluster worker process, and ``drain`` / ``list`` to manage workers."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from datetime import UTC
from pathlib import Path
from types import FrameType

import typer

from tideflow.store.db import Store

app = typer.Typer(
    help="Run a cluster worker (units are shared through leases in a Postgres metadata store), "
    "or manage workers: `tideflow worker --id w1 --database-url postgresql://...`.",
)

DatabaseUrl: str | None = typer.Option(
    None,
    "--database-url",
    envvar="TIDEFLOW_DATABASE_URL",
    help="The shared metadata store (postgresql://user:password@host:5432/db).",
)
DataDir: Path = typer.Option(
    Path(".tideflow"),
    "--data-dir",
    envvar="TIDEFLOW_DATA_DIR",
    help="Local state of this worker (and secret.key when TIDEFLOW_SECRET_KEY is unset).",
)


@app.callback(invoke_without_command=True)
def worker(
    ctx: typer.Context,
    worker_id: str = typer.Option(
        "", "--id", help="This worker's id, unique in the cluster (default: the host name)."
    ),
    database_url: str | None = DatabaseUrl,
    data_dir: Path = DataDir,
    lease_ttl: float = typer.Option(
        10.0,
        "--lease-ttl",
        envvar="TIDEFLOW_LEASE_TTL",
        help="Seconds without a heartbeat after which this worker's units move elsewhere.",
    ),
    heartbeat: float = typer.Option(
        2.0, "--heartbeat", envvar="TIDEFLOW_HEARTBEAT", help="Seconds between lease renewals."
    ),
) -> None:
    """Run units of the shared metadata store until SIGTERM or a drain request."""
    if ctx.invoked_subcommand is not None:
        return
    if not database_url:
        typer.echo("error: --database-url (or TIDEFLOW_DATABASE_URL) is required", err=True)
        raise typer.Exit(2)
    if heartbeat <= 0 or lease_ttl < 2 * heartbeat:
        typer.echo("error: --lease-ttl must be at least twice --heartbeat", err=True)
        raise typer.Exit(2)
    os.environ["TIDEFLOW_DATA_DIR"] = str(data_dir)
    os.environ["TIDEFLOW_DATABASE_URL"] = database_url
    from tideflow import logs
    from tideflow.engine.cluster.leases import ClusterConfig
    from tideflow.engine.cluster.member import Member
    from tideflow.settings import Settings
    from tideflow.store.crypto import SecretBox

    settings = Settings(data_dir=data_dir, database_url=database_url)
    logs.configure(settings.log_level)
    data_dir.mkdir(parents=True, exist_ok=True)
    store = _migrated_store(database_url)
    secrets = SecretBox.from_settings(settings.secret_key, data_dir)
    member = Member(
        store,
        secrets,
        worker_id or socket.gethostname(),
        cluster=ClusterConfig(lease_ttl=lease_ttl, heartbeat_interval=heartbeat),
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    typer.echo(f"Tideflow worker {member.worker_id} started", err=True)
    try:
        member.run(stop)
    finally:
        store.dispose()


def _migrated_store(url: str) -> Store:
    from tideflow.engine.cluster.leases import bound_transactions

    store = Store(url)
    bound_transactions(store.engine)
    for attempt in range(5):
        try:
            store.migrate()
            return store
        except Exception:
            # Another process (the API, a worker) may be migrating the same store right now.
            if attempt == 4:
                raise
            time.sleep(1 + attempt)
    return store


@app.command("drain")
def drain(
    worker_id: str = typer.Argument(..., help="The worker to drain."),
    database_url: str | None = DatabaseUrl,
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until it handed over."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds to wait."),
) -> None:
    """Ask a worker to hand its units to the others (flush, checkpoint, release) and exit."""
    from tideflow.engine.cluster.leases import DRAINING, STOPPED, set_worker_state
    from tideflow.store.models.cluster import WorkerRow

    if not database_url:
        typer.echo("error: --database-url (or TIDEFLOW_DATABASE_URL) is required", err=True)
        raise typer.Exit(2)
    store = Store(database_url)
    try:
        if not set_worker_state(store, worker_id, DRAINING):
            typer.echo(f"error: no worker {worker_id!r} in this cluster", err=True)
            raise typer.Exit(1)
        typer.echo(f"asked worker {worker_id} to drain", err=True)
        deadline = time.monotonic() + timeout
        while wait:
            with store.session() as s:
                row = s.get(WorkerRow, worker_id)
                state = row.state if row is not None else STOPPED
            if state == STOPPED:
                typer.echo(f"worker {worker_id} handed its units over and stopped", err=True)
                return
            if time.monotonic() > deadline:
                typer.echo(f"error: worker {worker_id} is still {state}", err=True)
                raise typer.Exit(1)
            time.sleep(0.5)
    finally:
        store.dispose()


@app.command("list")
def list_workers(database_url: str | None = DatabaseUrl) -> None:
    """Workers of the cluster, their last heartbeat and the units they hold."""
    from rich.console import Console
    from rich.table import Table
    from sqlalchemy import select

    from tideflow.engine.cluster.leases import aware
    from tideflow.store.models.cluster import WorkerRow

    if not database_url:
        typer.echo("error: --database-url (or TIDEFLOW_DATABASE_URL) is required", err=True)
        raise typer.Exit(2)
    store = Store(database_url)
    try:
        with store.session() as s:
            rows = list(s.scalars(select(WorkerRow).order_by(WorkerRow.id)))
        table = Table("id", "host", "state", "last seen (UTC)", "units")
        for r in rows:
            seen = aware(r.last_seen).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
            table.add_row(r.id, r.host, r.state, seen, ", ".join(r.units or []))
        Console().print(table)
    finally:
        store.dispose()
