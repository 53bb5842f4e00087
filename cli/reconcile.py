"""`studiovault reconcile --org ORG [--since WHEN]`: list what the gateways know, publish what we lack.

Each of the org's connected accounts (or, with --platform, StudioVault's own) is listed through its
gateway's API since its checkpoint (or --since), with a progress bar, and ends in a report: objects
listed, money facts found, already recorded, already on their way (pending), published now, dead
letters, mismatches (amount, currency or status: reported, never changed) and what was held for the
next run. The exit code is 1 when an account's API stayed unavailable, 0 otherwise.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from bootstrap.gateways import account_store, gateway_api
from bootstrap.senders import http_client
from cli.common import console, resources, run, settings
from gateways.accounts import Account
from producers.reconcile import Report, Window, reconcile_accounts


def _since(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter("expected an ISO date or time, e.g. 2026-11-01 or 2026-11-01T06:00:00+05:30") from None
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp())


def reconcile(
    org: Annotated[str | None, typer.Option(help="Reconcile this org's accounts.")] = None,
    platform: Annotated[bool, typer.Option("--platform", help="Reconcile StudioVault's own accounts.")] = False,
    since: Annotated[str | None, typer.Option(help="From this ISO date/time instead of each checkpoint.")] = None,
) -> None:
    """Find payments, refunds and disputes the ledger lacks (missed webhooks) and publish them once."""
    if (org is None) == (not platform):
        console.print("[red]name whose accounts: --org ORG, or --platform[/red]")
        raise typer.Exit(2)
    start = _since(since)

    async def go() -> list[Report]:
        async with resources() as res:
            store = account_store(res.db, settings().gateways)
            accounts = [a for a in await store.list(org, platform=platform) if a.active]
            if not accounts:
                console.print(f"no connected accounts for {org or 'the platform'}")
                return []
            cfg = settings().gateways
            tasks: dict[str, TaskID] = {}
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
            async with http_client() as http:
                with Progress(*columns, console=console, transient=True) as bar:

                    def step(account: Account, phase: str, n: int, total: int | None) -> None:
                        task = tasks.setdefault(account.id, bar.add_task(f"{account.gateway} {account.account_ref}"))
                        if phase == "listing":
                            bar.update(task, description=f"{account.gateway} {account.account_ref}: listing")
                        else:
                            bar.update(task, total=total, description=f"{account.gateway} {account.account_ref}:"
                                                                     " checking")
                            bar.advance(task, n)

                    return await reconcile_accounts(
                        res.db, res.publisher, gateway_api(cfg, http), store=store, accounts=accounts,
                        now=datetime.now(UTC),
                        since=start, window=Window(cfg.reconcile_overlap_s, cfg.reconcile_first_lookback_s),
                        progress=step)

    reports = run(go)
    _print(reports)
    if any(r.error for r in reports):
        raise typer.Exit(1)


def _when(seconds: int | None) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds") if seconds is not None else "-"


def _print(reports: list[Report]) -> None:
    table = Table(title="reconciliation")
    for column in ("account", "window", "listed", "found", "already recorded", "pending", "published", "dead",
                   "mismatches", "held", "checkpoint"):
        table.add_column(column)
    for r in reports:
        table.add_row(f"{r.gateway} {r.account_ref}", f"{_when(r.since)} → {_when(r.until)}", str(r.listed),
                      str(r.found), str(r.recorded), str(r.pending), str(r.published), str(len(r.dead)),
                      str(len(r.mismatches)), str(len(r.unresolved)),
                      "unavailable" if r.error else _when(r.checkpoint))
    console.print(table)
    for r in reports:
        if r.error:
            console.print(f"[red]{r.gateway} {r.account_ref}: not reconciled: {r.error}[/red]")
        for m in r.mismatches:
            console.print(f"[yellow]mismatch {r.gateway} {m.kind} {m.object_id}: {m.field} is {m.ledger} in the ledger,"
                          f" {m.gateway} at the gateway[/yellow]")
        for key, reason in r.dead:
            console.print(f"dead letter {key}: {reason} (`studiovault dead list`)")
        for obj, reason in r.unresolved + r.refused:
            console.print(f"not published {obj}: {reason}")
