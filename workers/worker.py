"""arq worker settings and lifecycle: clients are built in on_startup and closed in on_shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import structlog
from arq import cron, func
from arq.cron import CronJob
from arq.worker import Worker

from events.publish import Publisher
from handlers.base import Router
from providers.build import build_notify_services
from store import Database
from store.factory import open_database
from store.migrate import state
from workers.apply import apply_event
from workers.deps import Deps
from workers.policy import Backoff
from workers.queue import APPLY_JOB, ArqQueue, deserialize, serialize
from workers.redrive import redrive_cron
from workers.schedule import SCHEDULE
from workers.settings import Settings, get_settings

DEFAULT_ROUTER = "handlers.routes:ROUTER"
log = structlog.get_logger("studiovault.worker")


def _redacted(url: str) -> str:
    """A database URL fit for logs: the scheme and host or path, never credentials."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rpartition('@')[2]}"


def load_router(path: str) -> Router:
    """`module:attribute` → a `Router` (the production table, or a test's own)."""
    module_name, _, attribute = path.partition(":")
    router = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(router, Router):
        raise TypeError(f"{path} is not a handlers.base.Router")
    return router


class PendingMigrations(RuntimeError):
    pass


async def build_deps(settings: Settings, redis: Any, router: Router) -> Deps:
    token = settings.d1_bridge_token.get_secret_value() if settings.d1_bridge_token else None
    db = await open_database(settings.database_url, token)
    http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0), follow_redirects=False)
    queue = ArqQueue(redis, settings.queue_name)
    clock = lambda: datetime.now(UTC)  # noqa: E731 - the one real clock; tests inject their own
    try:  # a failure or a shutdown (CancelledError) half-way leaves nothing open
        await _require_migrated(db, settings.database_url)
        services = await _build_services(settings, http, redis)
    except BaseException:
        await http.aclose()
        await db.close()
        raise
    return Deps(
        settings=settings, db=db, queue=queue, publisher=Publisher(db, queue, clock), router=router, http=http,
        clock=clock, backoff=Backoff(settings.backoff_base, settings.backoff_cap), services=services,
    )


async def _require_migrated(db: Database, url: str) -> None:
    pending = (await state(db)).pending
    if pending:
        raise PendingMigrations(f"the database at {url} has pending migrations {pending}: run `studiovault migrate`")


async def _build_services(settings: Settings, http: httpx.AsyncClient, redis: Any = None) -> dict[str, Any]:
    """Clients handlers need beyond the database (notification senders, ...), keyed by name."""
    return build_notify_services(http, redis)


async def close_deps(deps: Deps) -> None:
    await deps.http.aclose()
    await deps.db.close()


class PipelineWorker(Worker):
    """arq's `Worker` that also tells when its poller is between two polls: the one moment it can be
    cancelled without cutting a Redis exchange in half (which would leave a job half-started and a
    connection object half-open)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.between_polls = asyncio.Event()  # set after start-up and each poll; clear while polling

    async def _poll_iteration(self) -> None:
        self.between_polls.clear()
        try:
            await super()._poll_iteration()
        finally:
            self.between_polls.set()


async def _until_between_polls(worker: PipelineWorker, poller: asyncio.Task[None], within: float) -> None:
    """Wait until the poller is asleep between polls (it may still be starting up), or has ended."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not worker.between_polls.is_set() and not poller.done() and loop.time() < deadline:
        idle = asyncio.ensure_future(worker.between_polls.wait())
        await asyncio.wait([idle, poller], timeout=deadline - loop.time(), return_when=asyncio.FIRST_COMPLETED)
        idle.cancel()


async def stop_worker(worker: PipelineWorker, grace: float = 0.0) -> None:
    """Stop a worker and release all it holds, whatever it is doing (starting up, polling, applying).

    It picks no new job at once; running jobs get `grace` seconds to finish, then are cancelled. A
    cancelled job loses nothing: its batch never committed, so its inbox row is still pending and arq
    (or the re-drive) runs it again. arq's own `close()` alone gets two things wrong: it gathers the
    job tasks and so re-raises a cancelled job's CancelledError, skipping `on_shutdown` (database and
    HTTP client left open) and the Redis pool's close; and it cancels the poller wherever it is, even
    half-way through starting a job.
    """
    loop = asyncio.get_running_loop()
    worker.allow_pick_jobs = False
    poller = worker.main_task
    if poller is not None:  # finish start-up and the current poll: no job starts after it
        await _until_between_polls(worker, poller, within=max(grace, 10.0))
    deadline = loop.time() + grace
    while (running := [t for t in list(worker.tasks.values()) if not t.done()]) and loop.time() < deadline:
        await asyncio.wait(running, timeout=deadline - loop.time())
    if poller is not None and not poller.done():
        await _until_between_polls(worker, poller, within=10.0)
        poller.cancel()  # no await since that check: it is asleep between polls (unless stuck past 10 s)
        await asyncio.gather(poller, return_exceptions=True)
    jobs = list(worker.tasks.values())
    for task in jobs:
        task.cancel()
    await asyncio.gather(*jobs, return_exceptions=True)
    worker.tasks.clear()
    await worker.close()


def _capped(job: CronJob, timeout: float) -> CronJob:
    """A scheduled job whose timeout is at most `timeout` (arq holds a killed worker's jobs for the
    largest timeout of any function + 10 s, so one long cron would delay every crash recovery)."""
    if job.timeout_s is not None and job.timeout_s <= timeout:
        return job
    return dataclasses.replace(job, timeout_s=timeout)


def worker_settings(
    settings: Settings | None = None,
    router_path: str = DEFAULT_ROUTER,
    customize: Callable[[Deps], Deps] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for `arq.Worker`, every one a real Worker parameter (tested).

    `customize` lets a test swap a dependency (e.g. the clock) after the real ones are built.
    """
    settings = settings or get_settings()
    from arq.connections import RedisSettings  # noqa: PLC0415

    async def on_startup(ctx: dict[str, Any]) -> None:
        deps = await build_deps(settings, ctx["redis"], load_router(router_path))
        ctx["deps"] = customize(deps) if customize else deps
        log.info("worker_ready", queue=settings.queue_name, database=_redacted(settings.database_url),
                 max_jobs=settings.max_jobs, poll_delay=settings.poll_delay, scheduled_jobs=settings.scheduled_jobs)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        if "deps" in ctx:
            await close_deps(ctx["deps"])

    every = settings.redrive_every_minutes
    return {
        "functions": [
            # keep_result=0: no result key, so a re-drive may re-enqueue the same job id at once.
            # max_tries is ours to enforce (inbox attempts, settings.max_attempts), not arq's.
            func(apply_event, name=APPLY_JOB, keep_result=0, max_tries=1_000_000, timeout=settings.job_timeout),
        ],
        "cron_jobs": [
            # Every function's timeout counts: a killed worker's jobs wait max(timeouts) + 10 s.
            cron(redrive_cron, minute=set(range(0, 60, every)), run_at_startup=True, unique=True,
                 timeout=settings.job_timeout),
            *(_capped(job, settings.job_timeout) for job in (SCHEDULE if settings.scheduled_jobs else [])),
        ],
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        "queue_name": settings.queue_name,
        "max_jobs": settings.max_jobs,
        "poll_delay": settings.poll_delay,
        "job_timeout": settings.job_timeout,
        # On SIGTERM/SIGINT arq stops picking jobs and waits this long for running ones (whole seconds).
        "job_completion_wait": math.ceil(settings.shutdown_grace),
        "keep_result": 0,
        "max_tries": 1_000_000,
        "job_serializer": serialize,
        "job_deserializer": deserialize,
        "timezone": UTC,
    }
