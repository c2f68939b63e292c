"""``tideflow transforms``: run transform code locally, in the sandbox pipelines use."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(no_args_is_help=True, help="Work with transform code locally.")


class Language(StrEnum):
    python = "python"
    javascript = "javascript"


def _language(file: Path, given: Language | None) -> Language:
    if given is not None:
        return given
    if file.suffix == ".py":
        return Language.python
    if file.suffix in (".js", ".mjs", ".cjs"):
        return Language.javascript
    raise typer.BadParameter(
        f"cannot tell the language of '{file.name}'; pass --language", param_hint="--language"
    )


def _records(path: Path) -> list[dict[str, Any]]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}", param_hint="--input") from None
    records = doc.get("records") if isinstance(doc, dict) else doc
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise typer.BadParameter(
            'expected a list of records or {"records": [...]}, each '
            '{"value": {...}, "key": {...}, "topic": "schema.table", "timestamp": ms}',
            param_hint="--input",
        )
    return records


@app.command("test")
def test(
    file: Path = typer.Argument(
        ...,
        exists=True,
        dir_okay=False,
        help="Code defining _streamkap_transform (and/or the _key and _topic functions).",
    ),
    input: Path = typer.Option(
        ..., "--input", "-i", exists=True, dir_okay=False, help="JSON file of sample records."
    ),
    language: Language | None = typer.Option(
        None, "--language", "-l", help="Default: from the file's extension (.py, .js)."
    ),
    time_ms: int = typer.Option(1000, "--time-ms", min=1, help="Per-record time limit."),
    memory_mb: int = typer.Option(128, "--memory-mb", min=1, help="Memory limit."),
) -> None:
    """Run FILE on the records of --input and print each record's outputs as JSON.

    Exits 1 (message on stderr, with the line) when the code does not load or fails on a record.
    """
    from tideflow.engine.transforms import trial
    from tideflow.engine.transforms.runtime import Limits

    lang = _language(file, language)
    try:
        samples = [trial.sample(r) for r in _records(input)]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--input") from None
    code = {"value_transform": file.read_text()}
    try:
        outcomes = trial.run(lang.value, code, (), Limits(time_ms, memory_mb), samples)
    except trial.CodeError as exc:
        where = f"{file}:{exc.line}" if exc.line else str(file)
        typer.echo(f"{where}: {exc.describe()}", err=True)
        raise typer.Exit(1) from None
    results = [
        {"index": i, "dropped": o.dropped, "outputs": o.outputs} for i, o in enumerate(outcomes)
    ]
    typer.echo(json.dumps(results, indent=2, default=str))
