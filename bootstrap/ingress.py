"""The ingress, wired: its database, Redis queue and publisher (their errors counted), the readiness
checks, the pipeline-state refresher behind `GET /metrics`, and tracing when configured."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import structlog
from starlette.applications import Starlette

from bootstrap.gateways import account_directory
from bootstrap.process import quiet_gc
from bootstrap.resources import open_resources, require_migrated
from bootstrap.telemetry import start_state_refresher, start_tracing
from config import Settings
from core.redact import redact_url
from events.publish import Publisher
from ingress.app import create_app
from ingress.pipeline import IngressDeps
from jobqueue import BatchQueue, Queue
from jobqueue.grouped import GroupedQueue
from observability.metrics import IngressMetrics
from store.coalesce import CoalescingDatabase

log = structlog.get_logger("studiovault.ingress")


def build_app(settings: Settings, *, own_process: bool = False) -> Starlette:
    """The ingress app for `settings`; connections open in its lifespan (uvicorn's start-up).
    `own_process`: the app is the process (`studiovault ingress`), so it may tune the process's collector."""

    @asynccontextmanager
    async def open_deps() -> AsyncIterator[IngressDeps]:
        metrics = IngressMetrics()
        # not ready until migrated (/readyz), so the schema is not required to start
        async with open_resources(settings, need_schema=False, errors=metrics) as res, AsyncExitStack() as stack:
            redis, queue = res.redis, res.queue
            if redis is None or queue is None:  # pragma: no cover - open_resources opens Redis unless told not to
                raise RuntimeError("the ingress needs Redis")
            start_tracing(stack, settings, "studiovault-ingress")
            await start_state_refresher(stack, settings, db=res.db, queue=queue, redis=redis,
                                        registry=metrics.registry, errors=metrics)

            async def database() -> object:
                return await res.db.query("SELECT 1 AS ok")

            async def migrations() -> None:
                await require_migrated(res.db, settings)

            async def ping_redis() -> object:
                return await redis.ping()

            log.info("ingress_started", database=redact_url(settings.database.database_url),
                     queue=settings.queue.queue_name)
            checks = {"database": database, "migrations": migrations, "redis": ping_redis}
            # Concurrent requests share reads, one write transaction (a savepoint each) and one Redis
            # round trip; the readiness checks and the account lookups keep to the plain ones. The
            # shared objects are not closed here: what they wrap is closed by `open_resources`.
            grouped = CoalescingDatabase(res.db)
            enqueues: Queue = GroupedQueue(queue) if isinstance(queue, BatchQueue) else queue
            deps = IngressDeps(db=grouped, publisher=Publisher(grouped, enqueues), checks=checks, metrics=metrics,
                               accounts=account_directory(res.db, settings.gateways))
            if own_process:
                quiet_gc()
            yield deps

    return create_app(settings.ingress, open_deps)
