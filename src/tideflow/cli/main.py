"""The ``tideflow`` command."""

from __future__ import annotations

import typer

from tideflow.cli import serve

app = typer.Typer(no_args_is_help=True, help="Tideflow: self-hosted change-data-capture.")
app.command("serve")(serve.serve)


@app.callback()
def main() -> None:
    """Tideflow: self-hosted change-data-capture."""


def _register_subcommands() -> None:
    import importlib

    # Each sub-app lives in its own module; those not written yet are simply absent.
    for module, name in (
        ("tideflow.cli.credentials", "credentials"),
        ("tideflow.cli.api_keys", "api-keys"),
        ("tideflow.cli.sources", "sources"),
        ("tideflow.cli.pipelines", "pipelines"),
        ("tideflow.cli.transforms", "transforms"),
        ("tideflow.cli.worker", "worker"),
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        app.add_typer(mod.app, name=name)


_register_subcommands()


if __name__ == "__main__":
    app()
