"""The ingress ASGI app: webhooks in, durable inbox rows out.

`create_app(config, open_deps)` is given its settings section and a way to open its dependencies (the
composition root, `bootstrap.ingress`, passes the real ones; tests pass their own): it opens them in
the lifespan and wires nothing itself. Routes are composed from each source's `routes` list: a new
source is one module in `ingress/sources/` and one more `*module.routes` below (and its name in
`SOURCES`). `GET /metrics` serves what the dependencies' `IngressMetrics` count.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from config import IngressSettings
from ingress.pipeline import IngressContext, IngressDeps, IngressError, answer_error, context
from ingress.sources import msg91, producer, r2, razorpay, resend, stripe, whatsapp

log = structlog.get_logger("studiovault.ingress")


async def healthz(_: Request) -> JSONResponse:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


async def metrics(request: Request) -> Response:
    """Prometheus text: this process's counters and histograms, and the shared pipeline-state gauges."""
    body, content_type = context(request).deps.metrics.negotiated(request.headers.get("accept"))
    return Response(body, headers={"content-type": content_type})


async def readyz(request: Request) -> JSONResponse:
    """Readiness: every dependency check passes; 503 names what does not."""
    results: dict[str, str] = {}
    for name, check in context(request).deps.checks.items():
        try:
            await check()
            results[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported by type
            results[name] = f"unavailable: {type(exc).__name__}"
            log.warning("not_ready", check=name, error=str(exc)[:300])
    ready = bool(results) and all(value == "ok" for value in results.values())
    return JSONResponse({"status": "ready" if ready else "not_ready", "checks": results},
                        status_code=200 if ready else 503)


ROUTES: list[BaseRoute] = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    *razorpay.routes,
    *stripe.routes,
    *r2.routes,
    *whatsapp.routes,
    *msg91.routes,
    *resend.routes,
    *producer.routes,
]

# The `source` of each webhook route (its label in the metrics), counted from 0 at start-up.
SOURCES = ("razorpay", "stripe", "r2")

OpenDeps = Callable[[], AbstractAsyncContextManager[IngressDeps]]


def create_app(config: IngressSettings, open_deps: OpenDeps) -> Starlette:
    """The ingress app; `open_deps` is entered in the lifespan and exited at shutdown."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with open_deps() as deps:
            deps.metrics.prime(SOURCES)
            app.state.ingress = IngressContext(config, deps)
            yield

    return Starlette(routes=ROUTES, lifespan=lifespan, exception_handlers={IngressError: answer_error})
