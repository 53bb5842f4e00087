"""`studiovault dead …`: dead-lettered events, listed, shown in full and replayed.

Times print as ISO-8601 in the operator's zone (`--tz`, default SV_OPERATOR_TIMEZONE); counts are of
the whole set, not the page ("showing 50 of 1,234"). A selection is `--type` (exact, or a prefix
ending in `*`: `payment.*`) and/or `--reason` (a substring of the recorded error, case-sensitive);
`dead replay --dry-run` prints what it would replay and changes nothing.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer
from rich.progress import Progress
from rich.table import Table

from cli.common import TzOption, console, iso, resources, run, zone
from events import inbox
from producers.replay import replay_dead
from readmodels.inbox import DeadFilter, count_dead, dead_ids, list_dead

dead_app = typer.Typer(help="Dead-lettered events: list, inspect, replay.", no_args_is_help=True)

TypeOption = Annotated[str | None, typer.Option(
    "--type", help="Only this event type (exact), or a prefix ending in '*' (e.g. 'payment.*').")]
ReasonOption = Annotated[str | None, typer.Option(
    "--reason", help="Only events whose recorded error contains this text (case-sensitive), e.g. unknown_project.")]
TIMES = ("occurred_at", "created_at", "available_at", "updated_at", "applied_at", "dead_at")
SHOWN = 50  # rows a dry run lists (the count is of all of them)


def _event(row: dict[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    return {"id": row["id"], "type": row["type"], "org_id": row["org_id"], "branch_id": row["branch_id"],
            "attempts": row["attempts"], "dead_at": iso(row["dead_at"], tz), "created_at": iso(row["created_at"], tz),
            "correlation_id": row["correlation_id"], "last_error": row["last_error"]}


def _table(title: str, events: list[dict[str, Any]]) -> Table:
    table = Table(title=title)
    for column in ("id", "type", "org_id", "attempts", "dead_at", "last_error"):
        table.add_column(column, overflow="fold")
    for e in events:
        table.add_row(e["id"], e["type"], e["org_id"], str(e["attempts"]), e["dead_at"] or "", e["last_error"] or "")
    return table


@dead_app.command("list")
def dead_list(
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    type_: TypeOption = None,
    reason: ReasonOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    tz: TzOption = None,
) -> None:
    """Dead-lettered events with their reason, newest first, and how many there are in all."""
    which, where = DeadFilter(type_, reason), zone(tz)

    async def go() -> tuple[list[dict[str, Any]], int, int]:
        async with resources(need_redis=False) as res:
            rows = await list_dead(res.db, limit, which)
            total = await count_dead(res.db, which)
            everything = await count_dead(res.db) if which.active else total
            return rows, total, everything

    rows, total, everything = run(go)
    events = [_event(r, where) for r in rows]
    if as_json:
        typer.echo(json.dumps({"total": total, "shown": len(events), "all_dead": everything,
                               "filter": {"type": which.type, "reason": which.reason}, "timezone": where.key,
                               "events": events}, indent=2))
        return
    title = f"dead events: showing {len(events):,} of {total:,}"
    if which.active:
        title += f" with {which.describe()} ({everything:,} dead in all)"
    console.print(_table(f"{title}; times in {where.key}", events))


@dead_app.command("show")
def dead_show(event_id: str, tz: TzOption = None) -> None:
    """One inbox row in full: its envelope, correlation and causation ids, times in the operator's zone."""
    where = zone(tz)

    async def go() -> dict[str, Any] | None:
        async with resources(need_redis=False) as res:
            return await inbox.get(res.db, event_id)

    row = run(go)
    if row is None:
        console.print(f"[red]no event {event_id} in the inbox[/red]")
        raise typer.Exit(1)
    envelope = json.loads(row["payload_json"])
    shown = {"id": row["id"], "type": row["type"], "status": row["status"], "attempts": row["attempts"],
             "last_error": row["last_error"],
             "correlation_id": envelope.get("correlation_id") or row["id"],
             "causation_id": envelope.get("causation_id"),
             "trace_context": envelope.get("trace_context")}
    shown |= {name: iso(row[name], where) for name in TIMES} | {"timezone": where.key}
    shown |= {k: v for k, v in row.items() if k not in shown and k != "payload_json"}
    shown["payload_json"] = envelope
    typer.echo(json.dumps(shown, indent=2))


@dead_app.command("replay")
def dead_replay(
    event_ids: Annotated[list[str] | None, typer.Argument(help="Event ids to replay.")] = None,
    *,
    replay_all: Annotated[bool, typer.Option("--all", help="Replay every dead event.")] = False,
    type_: TypeOption = None,
    reason: ReasonOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would be replayed; change nothing.")] = False,
    tz: TzOption = None,
) -> None:
    """Move dead events back to pending and enqueue them (after fixing what killed them): the ids
    named, or a selection (--all, --type, --reason)."""
    which, where = DeadFilter(type_, reason), zone(tz)
    selecting = replay_all or which.active
    if bool(event_ids) == selecting:
        console.print("[red]name event ids, or select with --all / --type / --reason (not both)[/red]")
        raise typer.Exit(2)
    if dry_run:
        _dry_run(list(event_ids or []), which, where)
        return

    async def go() -> tuple[int, int]:
        async with resources() as res:
            ids = await dead_ids(res.db, which) if selecting else list(event_ids or [])
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("replaying", total=len(ids))
                done = await replay_dead(res.db, res.publisher, ids, lambda n: progress.advance(task, n))
            return done, len(ids)

    done, asked = run(go)
    console.print(f"replayed {done} of {asked} events")


def _dry_run(event_ids: list[str], which: DeadFilter, where: ZoneInfo) -> None:
    async def go() -> tuple[list[dict[str, Any]], int, list[str]]:
        async with resources(need_redis=False) as res:
            if not event_ids:
                return await list_dead(res.db, SHOWN, which), await count_dead(res.db, which), []
            rows, skipped = [], []
            for event_id in event_ids:
                row = await inbox.get(res.db, event_id)
                if row is None or row["status"] != "dead":
                    skipped.append(f"{event_id} ({row['status'] if row else 'not in the inbox'})")
                else:
                    rows.append(row | {"correlation_id": json.loads(row["payload_json"]).get("correlation_id")})
            return rows[:SHOWN], len(rows), skipped

    rows, total, skipped = run(go)
    events = [_event(r, where) for r in rows]
    selection = f" with {which.describe()}" if which.active else ""
    console.print(_table(f"would replay {total:,} dead events{selection} (showing {len(events):,}); times in "
                         f"{where.key}", events))
    for note in skipped:
        console.print(f"would skip {note}: not dead")
    console.print(f"dry run: would replay {total} events; nothing was changed")
