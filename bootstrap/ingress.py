"""The ingress, wired: its database, Redis queue and publisher, and the readiness checks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from starlette.applications import Starlette

from bootstrap.gateways import account_directory
from bootstrap.resources import open_resources, require_migrated
from config import Settings
from core.redact import redact_url
from ingress.app import create_app
from ingress.pipeline import IngressDeps

log = structlog.get_logger("studiovault.ingress")


def build_app(settings: Settings) -> Starlette:
    """The ingress app for `settings`; connections open in its lifespan (uvicorn's start-up)."""

    @asynccontextmanager
    async def open_deps() -> AsyncIterator[IngressDeps]:
        async with open_resources(settings, need_schema=False) as res:  # not ready until migrated
            redis = res.redis
            if redis is None:  # pragma: no cover - open_resources opens Redis unless told not to
                raise RuntimeError("the ingress needs Redis")

            async def database() -> object:
                return await res.db.query("SELECT 1 AS ok")

            async def migrations() -> None:
                await require_migrated(res.db, settings)

            async def ping_redis() -> object:
                return await redis.ping()

            log.info("ingress_started", database=redact_url(settings.database.database_url),
                     queue=settings.queue.queue_name)
            checks = {"database": database, "migrations": migrations, "redis": ping_redis}
            yield IngressDeps(db=res.db, publisher=res.publisher, checks=checks,
                              accounts=account_directory(res.db, settings.gateways))

    return create_app(settings.ingress, open_deps)
