"""The `studiovault` command: every sub-command is registered here, from its module."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Annotated

import typer

from cli import accounts, billing, dead, demo, operate, reconcile, schema, serve, storage

# Uncaught exceptions reach the logging set-up (a JSON line in JSON mode), not a rich traceback box.
app = typer.Typer(help="StudioVault event pipeline: workers, ingress and operator tools.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


def _version(show: bool) -> None:
    if show:
        try:
            number = package_version("studiovault-pipeline")
        except PackageNotFoundError:  # run from a source tree that was never installed
            number = "unknown (not installed)"
        typer.echo(f"studiovault {number}")
        raise typer.Exit


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """StudioVault event pipeline: workers, ingress and operator tools."""


app.command()(operate.migrate)
app.command()(operate.status)
app.command()(operate.redrive)
app.command()(serve.worker)
app.command()(serve.ingress)
app.command("storage")(storage.storage)
app.add_typer(dead.dead_app, name="dead")
app.add_typer(billing.billing_app, name="billing")
app.add_typer(schema.schema_app, name="schema")
app.add_typer(accounts.accounts_app, name="accounts")
app.add_typer(demo.demo_app, name="demo")
app.command("reconcile")(reconcile.reconcile)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
