"""``tideflow pipelines``: pipeline status and metrics, read from a running server's API.

Authentication: ``--token`` (or ``TIDEFLOW_TOKEN``: an access token or an API key), else
``--client-id``/``--secret`` exchanged for an access token at ``/auth/access-token``.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

app = typer.Typer(no_args_is_help=True, help="Pipeline status and metrics (through the API).")

Url = typer.Option(
    "http://127.0.0.1:8000", "--url", envvar="TIDEFLOW_URL", help="The server's base URL."
)
Token = typer.Option(
    None, "--token", envvar="TIDEFLOW_TOKEN", help="Access token or API key (Bearer)."
)
ClientId = typer.Option(None, "--client-id", envvar="TIDEFLOW_CLIENT_ID")
Secret = typer.Option(None, "--secret", envvar="TIDEFLOW_SECRET")

METRIC_ROWS = (
    ("latency", "latency", "ms"),
    ("latencyP50", "latency p50", "ms"),
    ("latencyP95", "latency p95", "ms"),
    ("latencyP99", "latency p99", "ms"),
    ("recordsLag", "lag (events)", "count"),
    ("recordsWritten", "records written", "count"),
    ("bytesWritten", "bytes written", "count"),
    ("errors", "errors", "count"),
    ("retries", "retries", "count"),
)


def connect(url: str, token: str | None, client_id: str | None, secret: str | None) -> httpx.Client:
    """An API client; exits with a message a person can act on when it cannot authenticate."""
    base = url.rstrip("/")
    if not token:
        if not (client_id and secret):
            fail("give --token (or TIDEFLOW_TOKEN), or --client-id and --secret")
        try:
            r = httpx.post(
                f"{base}/auth/access-token",
                json={"client_id": client_id, "secret": secret},
                timeout=10,
            )
        except httpx.HTTPError as exc:
            fail(f"cannot reach {base}: {exc}")
        if r.status_code != 200:
            fail(f"cannot obtain a token from {base}: HTTP {r.status_code} {r.text[:200]}")
        token = str(r.json()["accessToken"])
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def get(client: httpx.Client, path: str, **params: Any) -> Any:
    try:
        r = client.get(path, params=params)
    except httpx.HTTPError as exc:
        fail(f"cannot reach {client.base_url}: {exc}")
    if r.status_code != 200:
        fail(f"GET {path}: HTTP {r.status_code} {r.text[:200]}")
    return r.json()


def all_pipelines(client: httpx.Client) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    page = 1
    while True:
        body = get(client, "/pipelines", page=page, page_size=100, sort="name")
        out += body["result"]
        if not body["has_next"]:
            return out
        page += 1


def resolve(client: httpx.Client, ref: str) -> dict[str, Any]:
    """A pipeline by id, else by exact name."""
    found = get(client, f"/pipelines/{ref}")["result"]
    if found:
        return dict(found[0])
    named = [p for p in all_pipelines(client) if p["name"] == ref]
    if not named:
        fail(f"no pipeline with id or name {ref!r}")
    return named[0]


def fmt_ms(value: Any) -> str:
    if value is None:
        return "-"
    ms = float(value)
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def fmt_count(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def status_table(client: httpx.Client) -> Table:
    pipes = all_pipelines(client)
    metrics: dict[str, dict[str, Any]] = {}
    if pipes:
        ids = ",".join(p["id"] for p in pipes)
        metrics = {m["id"]: m for m in get(client, "/pipelines/metrics", ids=ids)["data"]}
    table = Table("name", "id", "status", "health", "latency", "lag")
    for p in pipes:
        m = metrics.get(p["id"], {})
        table.add_row(
            p["name"],
            p["id"],
            str(p.get("connector_status") or m.get("status") or "-"),
            str(m.get("health") or p.get("health") or "-"),
            fmt_ms(m.get("latency")) if m.get("measuredAt") else "-",
            fmt_count(m.get("recordsLag")) if m.get("measuredAt") else "-",
        )
    return table


def metrics_table(client: httpx.Client, pipeline: dict[str, Any], caption: str = "") -> Table:
    data = get(client, f"/pipelines/{pipeline['id']}/metrics")["data"]
    table = Table("metric", "value", title=f"{pipeline['name']} ({pipeline['id']})")
    table.add_row("status", str(data.get("status")))
    table.add_row("health", str(data.get("health")))
    for key, label, kind in METRIC_ROWS:
        value = data.get(key)
        table.add_row(label, fmt_ms(value) if kind == "ms" else fmt_count(value))
    table.add_row("measured at", str(data.get("measuredAt") or "never"))
    table.caption = caption or None
    return table


@app.command("status")
def status(
    url: str = Url,
    token: str | None = Token,
    client_id: str | None = ClientId,
    secret: str | None = Secret,
) -> None:
    """A table of every pipeline: name, status, health, latency and lag."""
    with connect(url, token, client_id, secret) as client:
        Console(width=160).print(status_table(client))


@app.command("metrics")
def metrics(
    pipeline: str = typer.Argument(..., help="Pipeline id or name."),
    watch: bool = typer.Option(False, "--watch", help="Refresh until interrupted."),
    interval: float = typer.Option(2.0, "--interval", min=0.1, help="Seconds between refreshes."),
    count: int = typer.Option(0, "--count", min=0, help="With --watch: stop after N (0: never)."),
    url: str = Url,
    token: str | None = Token,
    client_id: str | None = ClientId,
    secret: str | None = Secret,
) -> None:
    """A pipeline's latency, quantiles, lag, throughput totals and errors."""
    console = Console(width=160)
    with connect(url, token, client_id, secret) as client:
        found = resolve(client, pipeline)
        if not watch:
            console.print(metrics_table(client, found))
            return
        shown = 0

        def render() -> Table:
            nonlocal shown
            shown += 1
            limit = f"/{count}" if count else ""
            at = datetime.now().strftime("%H:%M:%S")
            return metrics_table(client, found, f"refresh {shown}{limit} at {at}")

        try:
            with Live(render(), console=console, auto_refresh=False) as live:
                while not count or shown < count:
                    time.sleep(interval)
                    live.update(render(), refresh=True)
        except KeyboardInterrupt:
            pass
