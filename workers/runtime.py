"""The arq worker: its settings (every one a real `arq.Worker` parameter), clean stops, and the hooks
that build and release its dependencies. What the dependencies are is the composition root's business
(`bootstrap.worker`): this module is given `start`/`stop` callables and wires nothing itself."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from datetime import UTC
from typing import Any

import structlog
from arq import func
from arq.connections import ArqRedis, RedisSettings
from arq.worker import Worker

from config import Settings
from core.redact import redact_url
from jobqueue.arq_redis import APPLY_JOB, deserialize, serialize
from observability.instruments import redis_error_kind
from workers.apply import apply_event
from workers.crons import cron_jobs
from workers.deps import Deps

log = structlog.get_logger("studiovault.worker")

HEALTH_CHECK_INTERVAL_S = 30

StartDeps = Callable[[ArqRedis], Awaitable[Deps]]
StopDeps = Callable[[Deps], Awaitable[None]]

class PipelineWorker(Worker):
    """arq's `Worker` that also tells when its poller is between two polls: the one moment it can be
    cancelled without cutting a Redis exchange in half (which would leave a job half-started and a
    connection object half-open). Each successful poll is the worker's heartbeat metric; a failed one
    counts a Redis error."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.between_polls = asyncio.Event()  # set after start-up and each poll; clear while polling

    async def _poll_iteration(self) -> None:
        self.between_polls.clear()
        deps: Deps | None = self.ctx.get("deps")
        try:
            await super()._poll_iteration()
        except Exception as exc:
            if deps is not None:
                deps.metrics.redis_error(redis_error_kind(exc))
            raise
        else:
            if deps is not None:
                deps.metrics.polled()  # the heartbeat: Redis answered this poll
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


def worker_settings(settings: Settings, start: StartDeps, stop: StopDeps) -> dict[str, Any]:
    """Keyword arguments for `arq.Worker` (tested: each is a real Worker parameter). `start` builds the
    job dependencies from the worker's Redis pool once it is connected; `stop` releases them."""

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["deps"] = await start(ctx["redis"])
        log.info("worker_ready", queue=settings.queue.queue_name, database=redact_url(settings.database.database_url),
                 max_jobs=settings.worker.max_jobs, poll_delay=settings.worker.poll_delay,
                 scheduled_jobs=settings.worker.scheduled_jobs)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
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
        "max_jobs": w.max_jobs,
        "poll_delay": w.poll_delay,
        "job_timeout": w.job_timeout,
        # On SIGTERM/SIGINT arq stops picking jobs and waits this long for running ones (whole seconds).
        "job_completion_wait": math.ceil(w.shutdown_grace),
        "keep_result": 0,
        "max_tries": 1_000_000,
        # arq's health-check key (`<queue>:health-check`), what `studiovault worker --check` reads:
        # rewritten this often, it vanishes HEALTH_CHECK_INTERVAL_S + 1 s after the last live worker.
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "job_serializer": serialize,
        "job_deserializer": deserialize,
        "timezone": UTC,
    }
