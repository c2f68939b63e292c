"""``tideflow credentials``: API credentials (client id + secret) in the metadata store."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from tideflow.errors import TideflowError

if TYPE_CHECKING:
    from tideflow.control.auth.service import AuthService

app = typer.Typer(no_args_is_help=True, help="Create, list and revoke API credentials.")

DataDir: Path = typer.Option(
    Path(".tideflow"),
    "--data-dir",
    envvar="TIDEFLOW_DATA_DIR",
    help="Data directory of the installation (TIDEFLOW_DATABASE_URL, when set, names the "
    "metadata database instead of its SQLite file).",
)


@contextmanager
def auth_service(data_dir: Path) -> Iterator[AuthService]:
    """The auth service over the metadata store of ``data_dir``; errors exit with status 1."""
    from tideflow.control.auth.service import service
    from tideflow.control.context import AppContext
    from tideflow.settings import Settings

    ctx = AppContext.from_settings(Settings(data_dir=data_dir))
    try:
        yield service(ctx)
    except TideflowError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    finally:
        ctx.close()


def fmt_time(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


@app.command("create")
def create(
    role: str = typer.Option(..., "--role", help="admin, editor or viewer."),
    description: str = typer.Option("", "--description", help="What the credential is for."),
    data_dir: Path = DataDir,
) -> None:
    """Create a credential and print its secret (shown once)."""
    with auth_service(data_dir) as svc:
        created = svc.create_credential(role, description=description)
    typer.echo(f"client_id: {created.identifier}")
    typer.echo(f"secret:    {created.secret}")
    typer.echo(f"role:      {created.role}")
    typer.echo("The secret is shown once; store it now.", err=True)


@app.command("list")
def list_(data_dir: Path = DataDir) -> None:
    """List credentials (secrets are stored hashed and never shown)."""
    table = Table("client_id", "role", "description", "created", "revoked")
    with auth_service(data_dir) as svc:
        creds = svc.list_credentials()
    for cred in creds:
        table.add_row(
            cred.client_id,
            cred.role,
            cred.description,
            fmt_time(cred.created_at),
            fmt_time(cred.revoked_at) or "-",
        )
    Console(width=160).print(table)


@app.command("revoke")
def revoke(
    client_id: str = typer.Argument(..., help="The credential's client_id."),
    data_dir: Path = DataDir,
) -> None:
    """Revoke a credential; its refresh tokens die now and its access tokens within seconds."""
    with auth_service(data_dir) as svc:
        cred = svc.revoke_credential(client_id)
    typer.echo(f"revoked {cred.client_id}")
