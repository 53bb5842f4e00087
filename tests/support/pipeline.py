"""A running pipeline for tests: the real arq `Worker` (in this process) on a real redis-server, the
production `worker_settings`, a migrated SQLite file, and a publisher — no part replaced by a mock."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from arq.connections import ArqRedis
from starlette.applications import Starlette

from bootstrap.gateways import account_directory
from bootstrap.worker import load_router, open_worker
from config import Settings
from events.publish import Publisher
from ingress.app import create_app
from ingress.pipeline import IngressDeps
from jobqueue.arq_redis import ArqQueue, connect
from store import Database
from workers.deps import Deps
from workers.lifecycle import PipelineWorker, stop_worker

TEST_ENCRYPTION_KEY = "c3R1ZGlvdmF1bHQtdGVzdC1lbmNyeXB0aW9uLWtleSE="  # = tests.support.gateway's

SAMPLE_ROUTER = "tests.support.sample_events:ROUTER"


def fast_settings(database_url: str, redis_url: str, **overrides: Any) -> Settings:
    """Fast settings for tests: tight polling, short backoff, immediate re-drive."""
    values: dict[str, Any] = {
        "database_url": database_url, "redis_url": redis_url, "queue_name": "test:events", "poll_delay": 0.01,
        "backoff_base": 0.01, "backoff_cap": 0.2, "redrive_grace": 0.0, "job_timeout": 10.0, "max_attempts": 4,
        "log_json": True, "log_level": "INFO", "scheduled_jobs": False,
        "accounts_encryption_keys": [TEST_ENCRYPTION_KEY], "accounts_cache_ttl_s": 0.2,
    }
    values.update(overrides)
    return Settings.from_fields(values)


@dataclass
class Pipeline:
    settings: Settings
    db: Database
    redis: ArqRedis
    queue: ArqQueue
    publisher: Publisher
    workers: list[tuple[PipelineWorker, asyncio.Task[None]]] = field(default_factory=list)

    @classmethod
    async def create(cls, settings: Settings, db: Database) -> Pipeline:
        redis = await connect(settings.queue.redis_url, settings.queue.queue_name)
        queue = ArqQueue(redis, settings.queue.queue_name)
        return cls(settings, db, redis, queue, Publisher(db, queue))

    async def start_worker(
        self, router_path: str = SAMPLE_ROUTER, customize: Callable[[Deps], Deps] | None = None, **overrides: Any
    ) -> PipelineWorker:
        worker = await open_worker(self.settings, load_router(router_path), customize, handle_signals=False,
                                   **overrides)
        task = asyncio.create_task(worker.async_run())
        self.workers.append((worker, task))
        return worker

    def ingress_app(self, **overrides: Any) -> Starlette:
        """The ingress app on this pipeline's database and queue, with some settings changed."""
        settings = self.settings.replace(**overrides) if overrides else self.settings

        async def database() -> object:
            return await self.db.query("SELECT 1 AS ok")

        async def redis() -> object:
            return await self.redis.ping()

        @contextlib.asynccontextmanager
        async def open_deps() -> AsyncIterator[IngressDeps]:
            yield IngressDeps(db=self.db, publisher=self.publisher, checks={"database": database, "redis": redis},
                              accounts=account_directory(self.db, settings.gateways))

        return create_app(settings.ingress, open_deps)

    async def stop_workers(self, grace: float = 5.0) -> None:
        """Stop every worker as production does (`stop_worker`): running jobs get `grace` seconds."""
        for worker, task in self.workers:
            await stop_worker(worker, grace)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.workers.clear()

    async def wait_for(self, condition: Callable[[], Awaitable[bool]], within: float = 20.0, what: str = "") -> None:
        deadline = time.monotonic() + within
        while not await condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {within}s waiting for {what or condition}")
            await asyncio.sleep(0.02)

    async def settle(self, within: float = 20.0) -> None:
        """Wait until no inbox row is pending."""

        async def settled() -> bool:
            rows = await self.db.query("SELECT count(*) AS n FROM event_inbox WHERE status = 'pending'")
            return int(rows[0]["n"]) == 0

        await self.wait_for(settled, within, "every inbox row to leave 'pending'")

    async def inbox_status(self, event_id: str) -> str | None:
        rows = await self.db.query("SELECT status FROM event_inbox WHERE id = ?", (event_id,))
        return str(rows[0]["status"]) if rows else None

    async def close(self) -> None:
        await self.stop_workers()
        await self.redis.aclose()
