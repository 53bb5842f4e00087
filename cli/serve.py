"""The long-running processes: `studiovault worker` and `studiovault ingress`."""

from __future__ import annotations

import asyncio
from typing import Annotated

import structlog
import typer

from cli.common import console, settings


def worker(
    burst: Annotated[bool, typer.Option(help="Exit when the queue is empty.")] = False,
    router: Annotated[str | None, typer.Option(help="module:attribute of another routing table (tests).")] = None,
    check: Annotated[bool, typer.Option(
        "--check", help="Do not run one: say whether a worker recorded its health in Redis in the last "
                        "31 s (exit 0) or not (exit 1).")] = False,
) -> None:
    """Run an arq worker (run several, on one or many machines: they share Redis and the database)."""
    if check:
        raise typer.Exit(asyncio.run(_check_health()))
    from bootstrap.worker import load_router, worker_settings  # noqa: PLC0415 - only this command
    from handlers.routes import ROUTER  # noqa: PLC0415
    from workers.runtime import PipelineWorker, stop_worker  # noqa: PLC0415 - pulls in arq's worker

    config = settings()
    log = structlog.get_logger("studiovault.worker")

    async def go() -> None:
        w = PipelineWorker(**worker_settings(config, load_router(router) if router else ROUTER), burst=burst)
        try:
            await w.async_run()
        except asyncio.CancelledError:
            pass  # SIGINT/SIGTERM: arq waited up to shutdown_grace for running jobs, then cancelled its main task
        finally:
            await stop_worker(w)
            log.info("worker_stopped", jobs_complete=w.jobs_complete, jobs_retried=w.jobs_retried,
                     jobs_failed=w.jobs_failed)

    asyncio.run(go())


async def _check_health() -> int:
    """arq's health-check key: rewritten by a live worker every HEALTH_CHECK_INTERVAL_S."""
    from bootstrap.resources import open_redis  # noqa: PLC0415
    from workers.runtime import HEALTH_CHECK_INTERVAL_S  # noqa: PLC0415

    config = settings()
    key = f"{config.queue.queue_name}:health-check"
    redis = await open_redis(config)
    try:
        info, ttl_ms = await redis.get(key), await redis.pttl(key)
    finally:
        await redis.aclose()
    if info is None:
        console.print(f"[red]no worker recorded its health in the last {HEALTH_CHECK_INTERVAL_S + 1} s[/red] "
                      f"(Redis key {key}): none is running on queue {config.queue.queue_name}, or none reaches Redis")
        return 1
    age = max(HEALTH_CHECK_INTERVAL_S + 1 - int(ttl_ms) / 1000, 0.0)
    console.print(f"worker health on queue {config.queue.queue_name}, recorded {age:.0f} s ago: {info.decode()}")
    return 0


def ingress(
    host: Annotated[str | None, typer.Option(help="Bind address (default: SV_INGRESS_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: SV_INGRESS_PORT).")] = None,
) -> None:
    """Run the webhook ingress (uvicorn): POST /webhooks/{razorpay,stripe,r2}; GET /healthz, /readyz."""
    import uvicorn  # noqa: PLC0415 - only this command serves HTTP

    from bootstrap.ingress import build_app  # noqa: PLC0415

    config = settings()
    uvicorn.run(build_app(config), host=host or config.ingress.ingress_host, port=port or config.ingress.ingress_port,
                log_config=None, proxy_headers=False, ws="none", timeout_graceful_shutdown=10)
