"""`studiovault`: run the pipeline and operate it (status, dead letters, replay, re-drive)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

import structlog
import typer
from arq.connections import ArqRedis
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from events.publish import Publisher
from store import Database
from store.factory import open_database
from store.migrate import migrate as apply_migrations
from store.migrate import state as migration_state
from workers import operator
from workers.cli_billing import billing_app
from workers.cli_storage import storage as storage_command
from workers.logging import configure_logging
from workers.queue import ArqQueue, connect
from workers.redrive import redrive as redrive_events
from workers.settings import Settings, get_settings

app = typer.Typer(help="StudioVault event pipeline: workers, ingress and operator tools.", no_args_is_help=True)
dead_app = typer.Typer(help="Dead-lettered events: list, inspect, replay.", no_args_is_help=True)
app.add_typer(dead_app, name="dead")
app.add_typer(billing_app, name="billing")
app.command("storage")(storage_command)
console = Console()
T = TypeVar("T")


@dataclass
class Handles:
    settings: Settings
    db: Database
    redis: ArqRedis
    queue: ArqQueue
    publisher: Publisher


@asynccontextmanager
async def handles(need_redis: bool = True) -> AsyncIterator[Handles]:
    settings = get_settings()
    token = settings.d1_bridge_token.get_secret_value() if settings.d1_bridge_token else None
    db = await open_database(settings.database_url, token)
    redis = await connect(settings.redis_url, settings.queue_name) if need_redis else None
    try:
        queue = ArqQueue(redis, settings.queue_name)  # type: ignore[arg-type]
        yield Handles(settings, db, redis, queue, Publisher(db, queue))  # type: ignore[arg-type]
    finally:
        if redis is not None:
            await redis.aclose()
        await db.close()


def run(coro: Callable[[], Awaitable[T]]) -> T:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    return asyncio.run(coro())  # type: ignore[arg-type]


@app.command()
def migrate() -> None:
    """Apply pending migrations (migrations/NNNN_*.sql) to SV_DATABASE_URL, as wrangler would."""

    async def go() -> None:
        async with handles(need_redis=False) as h:
            applied = await apply_migrations(h.db)
            current = await migration_state(h.db)
        for name in applied:
            console.print(f"applied  {name}")
        console.print(f"database {h.settings.database_url}: {len(current.applied)} migrations applied, "
                      f"{len(current.pending)} pending")

    run(go)


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """Queue depth, inbox counts by status, the oldest pending event's age, migrations."""

    async def go() -> dict[str, Any]:
        async with handles() as h:
            current = await migration_state(h.db)
            st = await operator.pipeline_status(h.db, await h.queue.depth())
            return {"database": h.settings.database_url, "queue": h.settings.queue_name,
                    "queue_depth": st.queue_depth, "inbox": st.inbox, "oldest_pending_age_s": st.oldest_pending_age_s,
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


@app.command()
def redrive(
    grace: Annotated[float, typer.Option(help="Only events pending longer than this many seconds.")] = 0.0,
) -> None:
    """Re-enqueue every pending event now (after a Redis flush or outage)."""

    async def go() -> tuple[int, int]:
        async with handles() as h:
            total = int((await h.db.query("SELECT count(*) AS n FROM event_inbox WHERE status = 'pending'"))[0]["n"])
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("re-driving", total=total)
                return await redrive_events(h.db, h.queue, datetime.now(UTC), timedelta(seconds=grace),
                                            lambda n: progress.advance(task, n))

    examined, enqueued = run(go)
    console.print(f"examined {examined} pending events, enqueued {enqueued} (the rest were still queued)")


@dead_app.command("list")
def dead_list(limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50) -> None:
    """Dead-lettered events with their reason."""

    async def go() -> list[dict[str, Any]]:
        async with handles(need_redis=False) as h:
            return await operator.list_dead(h.db, limit)

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
        async with handles(need_redis=False) as h:
            from events import inbox  # noqa: PLC0415

            return await inbox.get(h.db, event_id)

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
        async with handles() as h:
            ids = await operator.dead_ids(h.db) if replay_all else list(event_ids or [])
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task("replaying", total=len(ids))
                done = await operator.replay_dead(h.db, h.publisher, ids, lambda n: progress.advance(task, n))
            return done, len(ids)

    done, asked = run(go)
    console.print(f"replayed {done} of {asked} events")


@app.command()
def worker(
    burst: Annotated[bool, typer.Option(help="Exit when the queue is empty.")] = False,
    router: Annotated[str, typer.Option(help="module:attribute of the routing table.")] = "handlers.routes:ROUTER",
) -> None:
    """Run an arq worker (run several, on one or many machines: they share Redis and the database)."""
    from workers.worker import PipelineWorker, stop_worker, worker_settings  # noqa: PLC0415

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    log = structlog.get_logger("studiovault.worker")

    async def go() -> None:
        w = PipelineWorker(**worker_settings(settings, router), burst=burst)
        try:
            await w.async_run()
        except asyncio.CancelledError:
            pass  # SIGINT/SIGTERM: arq waited up to shutdown_grace for running jobs, then cancelled its main task
        finally:
            await stop_worker(w)
            log.info("worker_stopped", jobs_complete=w.jobs_complete, jobs_retried=w.jobs_retried,
                     jobs_failed=w.jobs_failed)

    asyncio.run(go())


@app.command()
def ingress(
    host: Annotated[str | None, typer.Option(help="Bind address (default: SV_INGRESS_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: SV_INGRESS_PORT).")] = None,
) -> None:
    """Run the webhook ingress (uvicorn): POST /webhooks/razorpay, /webhooks/stripe; GET /healthz, /readyz."""
    import uvicorn  # noqa: PLC0415

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    uvicorn.run("ingress.app:create_app", factory=True, host=host or settings.ingress_host,
                port=port or settings.ingress_port, log_config=None, proxy_headers=False, ws="none",
                timeout_graceful_shutdown=10)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
