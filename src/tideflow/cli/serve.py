"""``tideflow serve``: API and (by default) the embedded worker in one process."""

from __future__ import annotations

import os
from pathlib import Path

import typer
import uvicorn


def serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    data_dir: Path = typer.Option(
        Path(".tideflow"), "--data-dir", help="Metadata (SQLite), secret key, local state."
    ),
    worker: bool = typer.Option(
        True, "--worker/--no-worker", help="Run the data-plane worker in this process."
    ),
) -> None:
    """Start the API server (and the embedded worker unless --no-worker)."""
    os.environ.setdefault("TIDEFLOW_DATA_DIR", str(data_dir))
    from tideflow import logs
    from tideflow.control.app import create_app
    from tideflow.control.auth.bootstrap import ensure_admin
    from tideflow.control.context import AppContext
    from tideflow.settings import Settings

    settings = Settings(data_dir=data_dir)
    logs.configure(settings.log_level)
    ctx = AppContext.from_settings(settings)
    banner = ensure_admin(ctx)
    app = create_app(ctx)

    runtime = None
    if worker:
        from tideflow.engine.cluster.leases import live_workers
        from tideflow.engine.worker import Worker

        cluster = live_workers(ctx.store)
        if cluster:
            # The embedded worker runs every unit without leases: next to cluster workers it
            # would run units twice.
            typer.echo(
                f"error: cluster workers ({', '.join(cluster)}) run the units of this metadata "
                "store; start the API with --no-worker (or drain them first: "
                "tideflow worker drain ID)",
                err=True,
            )
            raise typer.Exit(2)

        runtime = Worker(ctx.store, ctx.secrets, worker_id="embedded")
        runtime.start()

    url = f"http://{host}:{port}"
    typer.echo(f"Tideflow is listening on {url}  (API docs: {url}/docs)", err=True)
    if banner:
        typer.echo(banner.replace("http://HOST:PORT", url), err=True)
    try:
        uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)
    finally:
        if runtime is not None:
            runtime.stop()
