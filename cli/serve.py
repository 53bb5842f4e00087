"""The long-running processes: `studiovault worker` and `studiovault ingress`."""

from __future__ import annotations

import asyncio
from typing import Annotated

import structlog
import typer

from cli.common import console, settings


def worker(
    burst: Annotated[bool, typer.Option(help="Exit when the queue is empty.")] = False,
    check: Annotated[bool, typer.Option("--check", help="Exit 0 if this host's worker polled Redis lately "
                                        "(SV_HEARTBEAT_FILE, SV_HEARTBEAT_MAX_AGE_S), else 1: a healthcheck.")] = False,
    router: Annotated[str | None, typer.Option(help="module:attribute of another routing table (tests).")] = None,
) -> None:
    """Run an arq worker (run several, on one or many machines: they share Redis and the database)."""
    _tune_malloc()
    config = settings()
    if check:
        _check(config.worker.heartbeat_file, config.worker.heartbeat_max_age_s)
        return
    from bootstrap.resources import Unavailable  # noqa: PLC0415 - only this command
    from bootstrap.worker import load_router, open_worker  # noqa: PLC0415
    from handlers.routes import ROUTER  # noqa: PLC0415
    from store import DatabaseError  # noqa: PLC0415
    from workers.lifecycle import stop_worker  # noqa: PLC0415

    log = structlog.get_logger("studiovault.worker")

    async def go() -> int:
        w = await open_worker(config, load_router(router) if router else ROUTER, own_process=True, burst=burst)
        try:
            await w.async_run()
        except asyncio.CancelledError:
            pass  # SIGINT/SIGTERM: arq waited up to shutdown_grace for running jobs, then cancelled its main task
        except (Unavailable, DatabaseError) as exc:  # start-up: the database is unreachable or unmigrated
            log.error("worker_cannot_start", error=str(exc))  # noqa: TRY400 - an operator error, no traceback
            return 1
        finally:
            await stop_worker(w)
            log.info("worker_stopped", jobs_complete=w.jobs_complete, jobs_retried=w.jobs_retried,
                     jobs_failed=w.jobs_failed)
        return 0

    code = asyncio.run(go())
    if code:
        raise typer.Exit(code)


def _tune_malloc() -> None:
    """Before any thread starts (aiosqlite's, the executor's): see `bootstrap.process.one_malloc_arena`."""
    from bootstrap.process import one_malloc_arena  # noqa: PLC0415

    one_malloc_arena()


def _check(path: object, max_age_s: float) -> None:
    from pathlib import Path  # noqa: PLC0415

    from workers.heartbeat import age  # noqa: PLC0415

    seconds = age(Path(str(path)))
    if seconds is None:
        console.print(f"no worker heartbeat at {path}: the worker is not running (or not yet polling)")
        raise typer.Exit(1)
    if seconds > max_age_s:
        console.print(f"the worker's last poll of Redis was {seconds:.0f} s ago (limit {max_age_s:.0f} s): "
                      "stuck or cut off from Redis; see its redis_unavailable log lines")
        raise typer.Exit(1)
    console.print(f"ok: the worker polled Redis {seconds:.1f} s ago")


def ingress(
    host: Annotated[str | None, typer.Option(help="Bind address (default: SV_INGRESS_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: SV_INGRESS_PORT).")] = None,
) -> None:
    """Run the webhook ingress (uvicorn): POST /webhooks/{razorpay,stripe,r2,whatsapp,msg91/<token>,resend};
    GET /webhooks/whatsapp (Meta's handshake), /healthz, /readyz."""
    _tune_malloc()
    import uvicorn  # noqa: PLC0415 - only this command serves HTTP

    from bootstrap.ingress import build_app  # noqa: PLC0415

    config = settings()
    uvicorn.run(build_app(config, own_process=True), host=host or config.ingress.ingress_host,
                port=port or config.ingress.ingress_port, log_config=None, proxy_headers=False, ws="none",
                timeout_graceful_shutdown=10)
