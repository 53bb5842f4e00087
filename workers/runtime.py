"""The arq worker: its settings (every one a real `arq.Worker` parameter), clean stops, and the hooks
that build and release its dependencies. What the dependencies are is the composition root's business
(`bootstrap.worker`): this module is given `start`/`stop` callables and wires nothing itself."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any

import structlog
from arq import func
from arq.connections import ArqRedis, RedisSettings

from config import Settings
from core.redact import redact_url
from jobqueue.arq_redis import APPLY_JOB, deserialize, serialize
from workers.apply import apply_event
from workers.crons import cron_jobs
from workers.deps import Deps
from workers.feed import FeedPoller, stop_feed

log = structlog.get_logger("studiovault.worker")

HEALTH_CHECK_INTERVAL_S = 30

StartDeps = Callable[[ArqRedis], Awaitable[Deps]]
StopDeps = Callable[[Deps], Awaitable[None]]

def worker_settings(settings: Settings, start: StartDeps, stop: StopDeps) -> dict[str, Any]:
    """Keyword arguments for `arq.Worker` (tested: each is a real Worker parameter). `start` builds the
    job dependencies from the worker's Redis pool once it is connected; `stop` releases them."""

    async def on_startup(ctx: dict[str, Any]) -> None:
        deps = ctx["deps"] = await start(ctx["redis"])
        if deps.feed is not None:  # the inbox feed poller (producers.inbox_feed): the app's outbox rows
            ctx["feed_poller"] = FeedPoller(deps, deps.feed).start()
        log.info("worker_ready", queue=settings.queue.queue_name, database=redact_url(settings.database.database_url),
                 max_jobs=settings.max_jobs, poll_delay=settings.worker.poll_delay,
                 scheduled_jobs=settings.worker.scheduled_jobs)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        await stop_feed(ctx)
        if "deps" in ctx:
            await stop(ctx["deps"])

    w = settings.worker
    return {
        "functions": [
            # keep_result=0: no result key, so a re-drive may re-enqueue the same job id at once.
            # max_tries is ours to enforce (inbox attempts, SV_MAX_ATTEMPTS), not arq's.
            func(apply_event, name=APPLY_JOB, keep_result=0, max_tries=1_000_000, timeout=w.job_timeout),
        ],
        # Every function's timeout counts: a killed worker's jobs wait max(timeouts) + 10 s.
        "cron_jobs": cron_jobs(settings),
        "on_startup": on_startup,
        "on_shutdown": on_shutdown,
        "redis_settings": RedisSettings.from_dsn(settings.queue.redis_url),
        "queue_name": settings.queue.queue_name,
        "max_jobs": settings.max_jobs,
        "poll_delay": w.poll_delay,
        "job_timeout": w.job_timeout,
        # On SIGTERM/SIGINT arq stops picking jobs and waits this long for running ones (whole seconds).
        "job_completion_wait": math.ceil(w.shutdown_grace),
        "keep_result": 0,
        "max_tries": 1_000_000,
        # arq's own health-check key (`<queue>:health-check`, what `arq --check` reads): rewritten this
        # often, it vanishes HEALTH_CHECK_INTERVAL_S + 1 s after the last live worker.
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "job_serializer": serialize,
        "job_deserializer": deserialize,
        "timezone": UTC,
    }
