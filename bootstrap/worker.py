"""A worker's dependencies, built once Redis is connected, and the arq settings that build them.

The routing table is the production one, imported statically; tests may name their own (`--router`).
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any

import structlog
from arq.connections import ArqRedis

from bootstrap.database import open_database
from bootstrap.gateways import account_store, gateway_api
from bootstrap.process import quiet_gc
from bootstrap.resources import Unavailable, open_redis, require_migrated
from bootstrap.senders import http_client, notify_services
from bootstrap.telemetry import start_metrics_server, start_state_refresher, start_tracing
from config import Settings
from core.clock import utc_now
from events.publish import Publisher
from handlers.base import Router, Services
from handlers.routes import ROUTER
from jobqueue.arq_redis import ArqQueue
from jobqueue.redis_cursor import RedisFeedCursor, feed_prefix
from observability.instruments import CountingQueue, InstrumentedDatabase
from observability.metrics import WorkerMetrics
from store.coalesce import CoalescingDatabase
from workers import runtime
from workers.deps import Deps
from workers.failpoints import Failpoints
from workers.heartbeat import Heartbeat
from workers.lifecycle import RETRY_S, PipelineWorker
from workers.policy import Backoff

log = structlog.get_logger("studiovault.worker")


def load_router(path: str) -> Router:
    """`module:attribute` → a `Router` (a test's own routing table)."""
    module_name, _, attribute = path.partition(":")
    router = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(router, Router):
        raise TypeError(f"{path} is not a handlers.base.Router")
    return router


async def build_deps(settings: Settings, redis: ArqRedis, router: Router = ROUTER,
                     clock: Callable[[], datetime] = utc_now) -> Deps:
    """Everything a worker's jobs use; `close_deps` releases it. A failure or a shutdown (CancelledError)
    half-way leaves nothing open."""
    stack = AsyncExitStack()
    metrics = WorkerMetrics(router.event_types)
    try:
        raw_db = await open_database(settings.database)
        if settings.worker.coalesce:  # inside the instruments: errors and spans stay per unit of work
            raw_db = CoalescingDatabase(raw_db)
        stack.push_async_callback(raw_db.close)
        db = InstrumentedDatabase(raw_db, metrics)
        http = http_client()
        stack.push_async_callback(http.aclose)
        await require_migrated(db, settings)
        queue = CountingQueue(ArqQueue(redis, settings.queue.queue_name), metrics)
        start_tracing(stack, settings, "studiovault-worker")
        if settings.observability.metrics_port is not None:
            await start_state_refresher(stack, settings, db=db, queue=queue, redis=redis, registry=metrics.registry,
                                        errors=metrics)
            await start_metrics_server(stack, settings, metrics.registry)
    except BaseException:
        await stack.aclose()
        raise
    failpoints = Failpoints(settings.worker.failpoint_names)
    services = Services(notify=notify_services(
        settings.notify, http, redis, failpoints, metrics, max_attempts=settings.worker.max_attempts,
        provider_retry_window_s=settings.worker.provider_retry_window_s))
    feed = RedisFeedCursor(redis, feed_prefix(settings.queue.queue_name)) if settings.worker.feed_enabled else None
    return Deps(settings=settings, db=db, queue=queue, publisher=Publisher(db, queue, clock), router=router,
                clock=clock, backoff=Backoff(settings.worker.backoff_base, settings.worker.backoff_cap),
                services=services, failpoints=failpoints, resources=stack, feed=feed, metrics=metrics,
                accounts=account_store(db, settings.gateways), gateway_api=gateway_api(settings.gateways, http))


async def close_deps(deps: Deps) -> None:
    await deps.close()


async def open_worker(settings: Settings, router: Router = ROUTER, customize: Callable[[Deps], Deps] | None = None,
                      *, own_process: bool = False, **overrides: Any) -> PipelineWorker:
    """A worker on a bounded Redis pool, with its heartbeat. A worker started before its Redis (or during
    an outage) waits for it, as a running one does: logged once, retried every 2 s at most.
    `own_process`: the worker is the process (`studiovault worker`), so it may tune the process's collector."""
    pool = await _wait_for_redis(settings)
    kwargs = {**worker_settings(settings, router, customize, own_process=own_process), "redis_pool": pool,
              **overrides}
    return PipelineWorker(**kwargs, heartbeat=Heartbeat(settings.worker.heartbeat_file))


async def _wait_for_redis(settings: Settings) -> ArqRedis:
    waited: float | None = None
    for attempt in itertools.count():
        try:
            pool = await open_redis(settings)
        except Unavailable as exc:
            if waited is None:
                waited = time.monotonic()
                log.error("redis_unavailable", error=str(exc), at="start-up")  # noqa: TRY400 - no traceback
            await asyncio.sleep(RETRY_S[min(attempt, len(RETRY_S) - 1)])
            continue
        if waited is not None:
            log.info("redis_recovered", outage_s=round(time.monotonic() - waited, 1), at="start-up")
        return pool
    raise AssertionError("unreachable")  # pragma: no cover - itertools.count never ends


def worker_settings(settings: Settings, router: Router = ROUTER,
                    customize: Callable[[Deps], Deps] | None = None, *, own_process: bool = False) -> dict[str, Any]:
    """Keyword arguments for `workers.runtime.PipelineWorker`. `customize` lets a test swap a dependency
    (e.g. the clock) after the real ones are built."""

    async def start(redis: ArqRedis) -> Deps:
        deps = await build_deps(settings, redis, router)
        if own_process:
            quiet_gc()  # start-up is done: what it built lives as long as the process
        return customize(deps) if customize else deps

    return runtime.worker_settings(settings, start, close_deps)
