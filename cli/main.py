"""The `studiovault` command: every sub-command is registered here, from its module."""

from __future__ import annotations

import typer

from cli import billing, dead, operate, serve, storage

app = typer.Typer(help="StudioVault event pipeline: workers, ingress and operator tools.", no_args_is_help=True)
app.command()(operate.migrate)
app.command()(operate.status)
app.command()(operate.redrive)
app.command()(serve.worker)
app.command()(serve.ingress)
app.command("storage")(storage.storage)
app.add_typer(dead.dead_app, name="dead")
app.add_typer(billing.billing_app, name="billing")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
