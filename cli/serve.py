"""The long-running processes: `studiovault worker` and `studiovault ingress`."""

from __future__ import annotations

import asyncio
from typing import Annotated

import structlog
import typer

from cli.common import settings


def worker(
    burst: Annotated[bool, typer.Option(help="Exit when the queue is empty.")] = False,
    router: Annotated[str | None, typer.Option(help="module:attribute of another routing table (tests).")] = None,
) -> None:
    """Run an arq worker (run several, on one or many machines: they share Redis and the database)."""
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


def ingress(
    host: Annotated[str | None, typer.Option(help="Bind address (default: SV_INGRESS_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: SV_INGRESS_PORT).")] = None,
) -> None:
    """Run the webhook ingress (uvicorn): POST /webhooks/{razorpay,stripe,r2,whatsapp,msg91/<token>,resend};
    GET /webhooks/whatsapp (Meta's handshake), /healthz, /readyz."""
    import uvicorn  # noqa: PLC0415 - only this command serves HTTP

    from bootstrap.ingress import build_app  # noqa: PLC0415

    config = settings()
    uvicorn.run(build_app(config), host=host or config.ingress.ingress_host, port=port or config.ingress.ingress_port,
                log_config=None, proxy_headers=False, ws="none", timeout_graceful_shutdown=10)
