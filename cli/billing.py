"""`studiovault billing ...`: close a past billing period for every org (the cron does the current one)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli.common import console, resources, run, settings
from handlers.billing.calendar import InvalidPeriod, period_bounds
from producers.billing_close import CloseResult, publish_period_closes

billing_app = typer.Typer(help="Overage billing: close periods.", no_args_is_help=True)

_EARLIEST_ZONE = ZoneInfo("Etc/GMT-14")  # UTC+14: where a month ends first


@billing_app.command("close")
def close(
    period: Annotated[str, typer.Option(help="The calendar month to close, e.g. 2026-10 (must have ended).")],
) -> None:
    """Publish one billing-period-closed event per org for PERIOD; workers bill them. Re-running is safe:
    orgs already closed (or already published) are skipped."""
    try:
        _, ends_first = period_bounds(period, _EARLIEST_ZONE)
    except InvalidPeriod as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    now = datetime.now(UTC)
    if ends_first > now:
        console.print(f"[red]{period} has not ended anywhere yet: only past periods can be closed[/red]")
        raise typer.Exit(2)

    async def go() -> CloseResult:
        async with resources() as res:
            total = int((await res.db.query("SELECT count(*) AS n FROM organizations"))[0]["n"])
            columns = (TextColumn("closing {task.description}"), BarColumn(), MofNCompleteColumn(),
                       TimeElapsedColumn())
            with Progress(*columns, console=console, transient=True) as progress:
                task = progress.add_task(period, total=total)
                return await publish_period_closes(res.db, res.publisher, now, period=period,
                                                   progress=lambda n: progress.advance(task, n),
                                                   settings=settings().billing)

    result = run(go)
    console.print(
        f"{period}: examined {result.examined} orgs, published {result.published} closes, "
        f"{result.already} already published, {result.not_ended} not yet ended in their time zone, "
        f"{result.too_new} created after the period"
    )
