"""Commands on the inbox: migrate, status, re-drive, and the dead letters (list, show, replay)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.progress import Progress
from rich.table import Table

from cli.common import console, resources, run, settings
from core.redact import redact_url
from events import inbox
from jobqueue.redis_cursor import RedisFeedCursor, feed_prefix
from producers.redrive import redrive as redrive_events
from producers.replay import replay_dead
from readmodels import inbox as inbox_view
from store.migrate import migrate as apply_migrations
from store.migrate import state as migration_state

dead_app = typer.Typer(help="Dead-lettered events: list, inspect, replay.", no_args_is_help=True)


def migrate() -> None:
    """Apply pending migrations (migrations/NNNN_*.sql) to SV_DATABASE_URL, as wrangler would."""

    async def go() -> tuple[list[str], int, int]:
        async with resources(need_redis=False, need_schema=False, purpose="migrate") as res:
            applied = await apply_migrations(res.db)
            current = await migration_state(res.db)
        return applied, len(current.applied), len(current.pending)

    applied, done, pending = run(go)
    for name in applied:
        console.print(f"applied  {name}")
    console.print(f"database {redact_url(settings().database.database_url)}: {done} migrations applied, "
                  f"{pending} pending")


def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """Queue depth, inbox counts by status, the oldest pending event's age, migrations."""

    async def go() -> dict[str, Any]:
        async with resources() as res:
            assert res.queue is not None  # noqa: S101 - opened with Redis
            current = await migration_state(res.db)
            st = await inbox_view.pipeline_status(res.db, await res.queue.depth())
            cursor = await RedisFeedCursor(res.redis, feed_prefix(settings().queue.queue_name)).current()
            return {"database": redact_url(settings().database.database_url), "queue": settings().queue.queue_name,
                    "queue_depth": st.queue_depth, "inbox": st.inbox, "oldest_pending_age_s": st.oldest_pending_age_s,
                    "feed_waiting": await inbox_view.feed_waiting(res.db, cursor), "feed_cursor": cursor,
                    "migrations_applied": len(current.applied), "migrations_pending": current.pending}

    result = run(go)
    if as_json:
        console.print_json(json.dumps(result))
        return
    table = Table(title="StudioVault pipeline")
    table.add_column("what")
    table.add_column("value")
    for key, value in result.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict | list) else str(value))
    console.print(table)


def redrive(
    grace: Annotated[float, typer.Option(help="Only events pending longer than this many seconds.")] = 0.0,
) -> None:
    """Re-enqueue every pending event now (after a Redis flush or outage)."""

    async def go() -> tuple[int, int]:
        async with resources() as res:
            assert res.queue is not None  # noqa: S101 - opened with Redis
            rows = await res.db.query("SELECT count(*) AS n FROM event_inbox WHERE status = 'pending'")
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("re-driving", total=int(rows[0]["n"]))
                return await redrive_events(res.db, res.queue, datetime.now(UTC), timedelta(seconds=grace),
                                            lambda n: progress.advance(task, n))

    examined, enqueued = run(go)
    console.print(f"examined {examined} pending events, enqueued {enqueued} (the rest were still queued)")


@dead_app.command("list")
def dead_list(limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50) -> None:
    """Dead-lettered events with their reason."""

    async def go() -> list[dict[str, Any]]:
        async with resources(need_redis=False) as res:
            return await inbox_view.list_dead(res.db, limit)

    rows = run(go)
    table = Table(title=f"dead events ({len(rows)})")
    for column in ("id", "type", "org_id", "attempts", "last_error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(row["id"], row["type"], row["org_id"], str(row["attempts"]), row["last_error"] or "")
    console.print(table)


@dead_app.command("show")
def dead_show(event_id: str) -> None:
    """One inbox row in full, including its envelope."""

    async def go() -> dict[str, Any] | None:
        async with resources(need_redis=False) as res:
            return await inbox.get(res.db, event_id)

    row = run(go)
    if row is None:
        console.print(f"[red]no event {event_id} in the inbox[/red]")
        raise typer.Exit(1)
    row["payload_json"] = json.loads(row["payload_json"])
    console.print_json(json.dumps(row))


@dead_app.command("replay")
def dead_replay(
    event_ids: Annotated[list[str] | None, typer.Argument(help="Event ids to replay.")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Replay every dead event.")] = False,
) -> None:
    """Move dead events back to pending and enqueue them (after fixing what killed them)."""
    if not event_ids and not replay_all:
        console.print("[red]name event ids, or pass --all[/red]")
        raise typer.Exit(2)

    async def go() -> tuple[int, int]:
        async with resources() as res:
            ids = await inbox_view.dead_ids(res.db) if replay_all else list(event_ids or [])
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("replaying", total=len(ids))
                done = await replay_dead(res.db, res.publisher, ids, lambda n: progress.advance(task, n))
            return done, len(ids)

    done, asked = run(go)
    console.print(f"replayed {done} of {asked} events")
