"""Open what a process needs (database, Redis, queue, publisher) and close all of it, whatever happens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from bootstrap.database import open_database
from config import Settings
from core.redact import redact_url
from events.publish import Publisher
from jobqueue import Queue
from jobqueue.arq_redis import ArqQueue, connect
from observability.instruments import CountingQueue, InstrumentedDatabase
from observability.metrics import ErrorSink
from store import Database
from store.migrate import state


class Unavailable(Exception):
    """Something the process needs cannot be used; `str()` is the line an operator reads, with what to do."""


async def open_redis(settings: Settings) -> ArqRedis:
    """The queue's Redis, or `Unavailable` within the connect timeout."""
    q = settings.queue
    try:
        return await connect(q.redis_url, q.queue_name, connect_timeout_s=q.redis_connect_timeout_s,
                             command_timeout_s=q.redis_command_timeout_s)
    except (RedisError, OSError, TimeoutError) as exc:
        raise Unavailable(f"Redis at {redact_url(q.redis_url)} is unreachable ({type(exc).__name__}: {exc}). "
                          "Start it, or point SV_REDIS_URL at yours.") from exc


async def require_migrated(db: Database, settings: Settings) -> None:
    """`Unavailable` unless every migration is applied (reading the state is one query)."""
    pending = (await state(db)).pending
    if pending:
        raise Unavailable(f"the database at {redact_url(settings.database.database_url)} has {len(pending)} pending "
                          f"migration(s) ({pending[0]} first): run `studiovault migrate`.")


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
                         need_schema: bool = True, purpose: Literal["app", "migrate"] = "app",
                         errors: ErrorSink | None = None) -> AsyncIterator[Resources]:
    """The database (migrated, unless `need_schema=False`) and Redis (unless not needed); all closed on
    the way out, in reverse order, also when opening fails half-way. `purpose="migrate"` opens the
    database with the migration credentials (D1: the migration token). With `errors`, their failures
    are counted there (a process that serves metrics)."""
    async with AsyncExitStack() as stack:
        db: Database = await open_database(settings.database, purpose)
        stack.push_async_callback(db.close)
        if errors is not None:
            db = InstrumentedDatabase(db, errors)
        if need_schema:
            await require_migrated(db, settings)
        redis: ArqRedis | None = None
        queue: Queue | None = None
        if need_redis:
            redis = await open_redis(settings)
            stack.push_async_callback(redis.aclose)
            queue = ArqQueue(redis, settings.queue.queue_name)
            if errors is not None:
                queue = CountingQueue(queue, errors)
        yield Resources(settings, db, redis, queue)
