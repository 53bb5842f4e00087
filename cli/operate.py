"""Commands on the inbox: migrate, status, re-drive (the dead letters are `cli.dead`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.progress import Progress
from rich.table import Table

from cli.common import TzOption, console, iso, resources, run, settings, zone
from core.redact import redact_url
from jobqueue.redis_cursor import RedisFeedCursor, feed_prefix
from producers.redrive import redrive as redrive_events
from readmodels import inbox as inbox_view
from store.migrate import migrate as apply_migrations
from store.migrate import state as migration_state


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


def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
           tz: TzOption = None) -> None:
    """Queue depth, inbox counts by status, the oldest pending event's age, migrations."""
    where = zone(tz)

    async def go() -> dict[str, Any]:
        async with resources() as res:
            assert res.queue is not None  # noqa: S101 - opened with Redis
            current = await migration_state(res.db)
            now = datetime.now(UTC)
            st = await inbox_view.pipeline_status(res.db, await res.queue.depth(), now)
            assert res.redis is not None  # noqa: S101 - opened with Redis
            cursor = await RedisFeedCursor(res.redis, feed_prefix(settings().queue.queue_name)).current()
            return {"database": redact_url(settings().database.database_url), "queue": settings().queue.queue_name,
                    "as_of": now.astimezone(where).isoformat(timespec="seconds"),
                    "queue_depth": st.queue_depth, "inbox": st.inbox, "oldest_pending_age_s": st.oldest_pending_age_s,
                    "oldest_pending_since": iso(st.oldest_pending_created_at, where),
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
