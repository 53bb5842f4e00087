"""The ingress ASGI app: gateway webhooks in, durable inbox rows out (DESIGN.md, "What it is").

`create_app()` is the uvicorn factory (`studiovault ingress`, or `uvicorn --factory ingress.app:create_app`).
Clients are built in the lifespan, never at import time; tests inject their own database and publisher.
Routes are composed from each source's `routes` list: a new source is one more `*module.routes` below.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from events.publish import Publisher
from ingress import r2, razorpay, stripe
from ingress.common import IngressState
from store import Database
from store.factory import open_database
from workers.queue import ArqQueue, connect
from workers.settings import Settings, get_settings

log = structlog.get_logger("studiovault.ingress")


async def healthz(_: Request) -> JSONResponse:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Readiness: the database and Redis both answer; 503 names what does not."""
    state: IngressState = request.app.state.ingress
    checks: dict[str, str] = {}
    try:
        await state.db.query("SELECT 1 AS ok")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported by type
        checks["database"] = f"unavailable: {type(exc).__name__}"
    redis = getattr(state.publisher.queue, "redis", None)
    if redis is None:
        checks["redis"] = "not configured"
    else:
        try:
            await redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:  # noqa: BLE001 - same as above
            checks["redis"] = f"unavailable: {type(exc).__name__}"
    ready = checks["database"] == "ok" and checks["redis"] == "ok"
    return JSONResponse({"status": "ready" if ready else "not_ready", "checks": checks},
                        status_code=200 if ready else 503)


ROUTES: list[BaseRoute] = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    *razorpay.routes,
    *stripe.routes,
    *r2.routes,
]


def create_app(
    settings: Settings | None = None, *, db: Database | None = None, publisher: Publisher | None = None
) -> Starlette:
    """The ingress app. With `db`/`publisher` given (tests), the lifespan uses them and closes neither."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned: list[Any] = []
        database = db
        if database is None:
            token = settings.d1_bridge_token.get_secret_value() if settings.d1_bridge_token else None
            database = await open_database(settings.database_url, token)
            owned.append(database)
        pub = publisher
        if pub is None:
            redis = await connect(settings.redis_url, settings.queue_name)
            owned.append(redis)
            pub = Publisher(database, ArqQueue(redis, settings.queue_name))
        app.state.ingress = IngressState(settings=settings, db=database, publisher=pub)
        log.info("ingress_started", database=settings.database_url.split("?")[0], queue=settings.queue_name)
        try:
            yield
        finally:
            for handle in reversed(owned):
                await (handle.aclose() if hasattr(handle, "aclose") else handle.close())

    return Starlette(routes=ROUTES, lifespan=lifespan)
