"""Observability, wired: the worker's metrics server, the pipeline-state refresher on Redis, and the
span exporter a setting names. Each `start_*` registers its own stop on the caller's exit stack, so
it ends with the worker (or the ingress) that started it."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AsyncExitStack

import structlog
from arq.connections import ArqRedis
from prometheus_client import CollectorRegistry, start_http_server

from config import Settings
from jobqueue import Queue
from observability import tracing
from observability.metrics import ErrorSink
from observability.state import PipelineState, StateRefresher
from store import Database

log = structlog.get_logger("studiovault.metrics")


class RedisSharedStore:
    """`observability.state.SharedStore` on the process's Redis pool."""

    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis

    async def claim(self, key: str, ttl_ms: int) -> bool:
        return bool(await self.redis.set(key, b"1", nx=True, px=ttl_ms))

    async def put(self, key: str, value: bytes, ttl_ms: int) -> None:
        await self.redis.set(key, value, px=ttl_ms)

    async def get(self, key: str) -> bytes | None:
        value = await self.redis.get(key)
        return bytes(value) if value is not None else None


def state_key(settings: Settings) -> str:
    """One snapshot per queue (several deployments may share a Redis)."""
    return f"{settings.queue.queue_name}:pipeline-state"


async def start_state_refresher(stack: AsyncExitStack, settings: Settings, *, db: Database, queue: Queue,
                                redis: ArqRedis, registry: CollectorRegistry, errors: ErrorSink) -> StateRefresher:
    """Serve the pipeline-state gauges from `registry`, refreshed in the background until `stack` closes."""
    state = PipelineState()
    registry.register(state)
    refresher = StateRefresher(db=db, queue=queue, store=RedisSharedStore(redis), state=state, errors=errors,
                               key=state_key(settings), interval_s=settings.observability.pipeline_state_interval_s)
    task = asyncio.create_task(refresher.run(), name="pipeline-state-refresher")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(stop)
    return refresher


async def start_metrics_server(stack: AsyncExitStack, settings: Settings, registry: CollectorRegistry) -> int:
    """Serve `registry` as Prometheus text on SV_METRICS_HOST:SV_METRICS_PORT (a thread of its own; every
    path answers). Returns the port; stopped when `stack` closes."""
    cfg = settings.observability
    if cfg.metrics_port is None:
        raise ValueError("SV_METRICS_PORT is not set")
    try:
        server, thread = start_http_server(cfg.metrics_port, cfg.metrics_host, registry=registry)
    except OSError as exc:
        raise RuntimeError(f"cannot serve metrics on {cfg.metrics_host}:{cfg.metrics_port} "
                           f"(SV_METRICS_HOST/SV_METRICS_PORT): {exc}") from exc

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    stack.push_async_callback(asyncio.to_thread, stop)
    log.info("metrics_serving", host=cfg.metrics_host, port=cfg.metrics_port)
    return cfg.metrics_port


def start_tracing(stack: AsyncExitStack, settings: Settings, service: str) -> None:
    """Export spans as SV_OTEL_EXPORTER says (`none`: tracing stays as it is, off unless a test set it)."""
    exporter = settings.observability.otel_exporter
    if exporter == "none":
        return
    tracing.configure_exporter(exporter, service)
    stack.callback(tracing.shutdown)
