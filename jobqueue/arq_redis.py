"""The `Queue` port on arq and Redis, with JSON jobs: a queue payload can never run code in a worker."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from arq.connections import ArqRedis, RedisSettings, create_pool

APPLY_JOB = "apply_event"


def serialize(job: dict[str, Any]) -> bytes:
    return orjson.dumps(job)


def deserialize(data: bytes) -> dict[str, Any]:
    job = orjson.loads(data)
    if not isinstance(job, dict):
        raise TypeError("an arq job must deserialize to an object")
    return job


async def connect(redis_url: str, queue_name: str) -> ArqRedis:
    return await create_pool(
        RedisSettings.from_dsn(redis_url),
        default_queue_name=queue_name,
        job_serializer=serialize,
        job_deserializer=deserialize,
    )


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
