"""The `Queue` port on arq and Redis, with JSON jobs: a queue payload can never run code in a worker."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from arq.connections import ArqRedis

APPLY_JOB = "apply_event"


def serialize(job: dict[str, Any]) -> bytes:
    return orjson.dumps(job)


def deserialize(data: bytes) -> dict[str, Any]:
    job = orjson.loads(data)
    if not isinstance(job, dict):
        raise TypeError("an arq job must deserialize to an object")
    return job


async def connect(redis_url: str, queue_name: str, *, connect_timeout_s: float = 2.0,
                  command_timeout_s: float = 5.0) -> ArqRedis:
    """A pool on `redis_url` whose every connect and command is bounded in time, checked with one PING.

    Built here rather than by arq's `create_pool`, which sets no command timeout (a Redis that accepts
    the connection and then stops answering would hang a caller for good) and retries for 5 s."""
    pool: ArqRedis = ArqRedis.from_url(redis_url, socket_connect_timeout=connect_timeout_s,
                                       socket_timeout=command_timeout_s, encoding="utf8")
    pool.job_serializer = serialize
    pool.job_deserializer = deserialize
    pool.default_queue_name = queue_name
    try:
        await pool.ping()
    except BaseException:
        await pool.aclose()
        raise
    return pool


class ArqQueue:
    """Enqueue an event's envelope as an `apply_event` job whose arq job id is the event id."""

    def __init__(self, redis: ArqRedis, queue_name: str) -> None:
        self.redis = redis
        self.queue_name = queue_name

    async def enqueue(self, envelope_json: str, event_id: str, defer_until: datetime | None = None) -> bool:
        job = await self.redis.enqueue_job(
            APPLY_JOB, envelope_json, _job_id=event_id, _queue_name=self.queue_name, _defer_until=defer_until
        )
        return job is not None

    async def depth(self) -> int:
        return int(await self.redis.zcard(self.queue_name))
