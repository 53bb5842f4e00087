"""Open what a process needs (database, Redis, queue, publisher) and close all of it, whatever happens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from arq.connections import ArqRedis

from bootstrap.database import open_database
from config import Settings
from events.publish import Publisher
from jobqueue import Queue
from jobqueue.arq_redis import ArqQueue, connect
from observability.instruments import CountingQueue, InstrumentedDatabase
from observability.metrics import ErrorSink
from store import Database


async def open_redis(settings: Settings) -> ArqRedis:
    return await connect(settings.queue.redis_url, settings.queue.queue_name)


@dataclass(frozen=True)
class Resources:
    settings: Settings
    db: Database
    redis: ArqRedis | None
    queue: Queue | None

    @property
    def publisher(self) -> Publisher:
        if self.queue is None:
            raise RuntimeError("this command opened no queue (need_redis=False)")
        return Publisher(self.db, self.queue)


@asynccontextmanager
async def open_resources(settings: Settings, *, need_redis: bool = True,
                         errors: ErrorSink | None = None) -> AsyncIterator[Resources]:
    """The database and (unless not needed) Redis; both closed on the way out, in reverse order.
    With `errors`, their failures are counted there (a process that serves metrics)."""
    async with AsyncExitStack() as stack:
        db: Database = await open_database(settings.database)
        stack.push_async_callback(db.close)
        if errors is not None:
            db = InstrumentedDatabase(db, errors)
        redis: ArqRedis | None = None
        queue: Queue | None = None
        if need_redis:
            redis = await open_redis(settings)
            stack.push_async_callback(redis.aclose)
            queue = ArqQueue(redis, settings.queue.queue_name)
            if errors is not None:
                queue = CountingQueue(queue, errors)
        yield Resources(settings, db, redis, queue)
