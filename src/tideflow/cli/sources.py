"""``tideflow sources``: snapshot a source's tables through a running server's API.

``tideflow sources snapshot SOURCE [--table T ...] [--filter 'T:PREDICATE' ...] [--blocking]``
requests the snapshot and follows it with a progress bar per table until every table is
completed, failed or cancelled (Ctrl-C stops following; the snapshot goes on). Authentication
as in ``tideflow pipelines``.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)

from tideflow.cli.pipelines import ClientId, Secret, Token, Url, connect, fail, get

app = typer.Typer(no_args_is_help=True, help="Source snapshots (through the API).")

FINAL = {"completed", "failed", "cancelled"}


def resolve(client: httpx.Client, ref: str) -> dict[str, Any]:
    """A source by id, else by exact name."""
    found = get(client, f"/sources/{ref}")["result"]
    if found:
        return dict(found[0])
    named = get(client, "/sources", page=1, page_size=100, partial_name=ref)["result"]
    named = [s for s in named if s["name"] == ref]
    if not named:
        fail(f"no source with id or name {ref!r}")
    return dict(named[0])


def conditions(filters: list[str]) -> list[dict[str, str]] | None:
    out = []
    for item in filters:
        table, sep, predicate = item.partition(":")
        if not sep or not table.strip() or not predicate.strip():
            fail(f"--filter takes 'schema.table:PREDICATE', not {item!r}")
        out.append({"data_collection": table.strip(), "filter": predicate.strip()})
    return out or None


@app.command()
def snapshot(
    source: str = typer.Argument(..., help="Source id or name."),
    table: list[str] = typer.Option([], "--table", "-t", help="schema.table (repeatable)."),
    filter_: list[str] = typer.Option(
        [], "--filter", help="'schema.table:SQL predicate' restricting the rows read."
    ),
    blocking: bool = typer.Option(False, "--blocking", help="Pause streaming; keyless tables."),
    surrogate_key: str | None = typer.Option(None, "--surrogate-key", help="Chunk by column."),
    follow: bool = typer.Option(True, "--follow/--no-follow", help="Show progress until done."),
    url: str = Url,
    token: str | None = Token,
    client_id: str | None = ClientId,
    secret: str | None = Secret,
) -> None:
    """Snapshot tables of a source (all of them unless --table is given)."""
    with connect(url, token, client_id, secret) as client:
        src = resolve(client, source)
        body = {
            "source_id": src["id"],
            "topic_names": table or None,
            "additional_conditions": conditions(filter_),
            "snapshot_type": "blocking" if blocking else "incremental",
            "surrogate_key": surrogate_key,
        }
        r = client.post("/sources/snapshot", json=body)
        if r.status_code != 202:
            fail(f"snapshot refused: HTTP {r.status_code} {r.text[:300]}")
        if not follow:
            typer.echo(f"snapshot {r.json().get('request_id')} of {src['name']} requested")
            return
        final = _follow(client, src["id"])
    failed = [t for t in final if t["status"] != "completed"]
    for t in failed:
        typer.echo(f"{t['topic_name']}: {t['status']} {t.get('message', '')}", err=True)
    raise typer.Exit(1 if failed else 0)


def _follow(client: httpx.Client, source_id: str) -> list[dict[str, Any]]:
    console = Console()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeRemainingColumn(),
    )
    tasks: dict[str, TaskID] = {}
    with Progress(*columns, console=console) as bar:
        while True:
            topics = get(client, f"/sources/{source_id}/snapshot")["topics"]
            for t in topics:
                total = max(int(t["rows_total"]), int(t["rows_read"]), 1)
                if t["topic_name"] not in tasks:
                    tasks[t["topic_name"]] = bar.add_task(
                        t["topic_name"], total=total, status=t["status"]
                    )
                done = total if t["status"] == "completed" else int(t["rows_read"])
                bar.update(tasks[t["topic_name"]], completed=done, total=total, status=t["status"])
            if topics and all(t["status"] in FINAL for t in topics):
                return list(topics)
            time.sleep(1.0)
