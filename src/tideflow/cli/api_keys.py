"""``tideflow api-keys``: long-lived bearer keys (``tfk_…``) in the metadata store."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tideflow.cli.credentials import DataDir, auth_service, fmt_time

app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API keys.")


@app.command("create")
def create(
    name: str = typer.Option(..., "--name", help="A label for the key."),
    role: str = typer.Option(..., "--role", help="admin, editor or viewer."),
    data_dir: Path = DataDir,
) -> None:
    """Create an API key and print it (shown once)."""
    with auth_service(data_dir) as svc:
        created = svc.create_api_key(name, role)
    typer.echo(f"id:   {created.id}")
    typer.echo(f"key:  {created.secret}")
    typer.echo(f"role: {created.role}")
    typer.echo("The key is shown once; use it as 'Authorization: Bearer <key>'.", err=True)


@app.command("list")
def list_(data_dir: Path = DataDir) -> None:
    """List API keys (keys are stored hashed; only their prefix is shown)."""
    table = Table("id", "name", "prefix", "role", "created", "revoked")
    with auth_service(data_dir) as svc:
        keys = svc.list_api_keys()
    for key in keys:
        table.add_row(
            key.id,
            key.name,
            key.prefix + "…",
            key.role,
            fmt_time(key.created_at),
            fmt_time(key.revoked_at) or "-",
        )
    Console(width=160).print(table)


@app.command("revoke")
def revoke(
    key_id: str = typer.Argument(..., help="The key's id (see `tideflow api-keys list`)."),
    data_dir: Path = DataDir,
) -> None:
    """Revoke an API key (rejected by running servers within seconds)."""
    with auth_service(data_dir) as svc:
        row = svc.revoke_api_key(key_id)
    typer.echo(f"revoked {row.id} ({row.name})")
