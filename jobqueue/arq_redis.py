"""The `Queue` port on arq and Redis, with JSON jobs: a queue payload can never run code in a worker."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from arq.connections import ArqRedis
from arq.constants import expires_extra_ms, job_key_prefix, result_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms, to_unix_ms

from jobqueue.port import Job

APPLY_JOB = "apply_event"
# arq's `enqueue_job` for several jobs in one round trip, atomically per job as arq's WATCH/MULTI is: a job
# whose job or result key exists is refused (0); else its job key is set with its expiry and its id
# scored into the queue (1). KEYS: job key, result key per job; ARGV: queue, then id, score, expiry ms,
# payload per job, and last the wake channel: when any job was enqueued, one message there wakes idle
# workers (`workers.wake`).
_ENQUEUE_MANY = """
local out = {}
local any = false
for i = 1, #KEYS / 2 do
  local a = 2 + (i - 1) * 4
  if redis.call('EXISTS', KEYS[2 * i - 1], KEYS[2 * i]) > 0 then
    out[i] = 0
  else
    redis.call('PSETEX', KEYS[2 * i - 1], ARGV[a + 2], ARGV[a + 3])
    redis.call('ZADD', ARGV[1], ARGV[a + 1], ARGV[a])
    out[i] = 1
    any = true
  end
end
if any then
  redis.call('PUBLISH', ARGV[#ARGV], '1')
end
return out
"""


def wake_channel(queue_name: str) -> str:
    """Where enqueuing announces new jobs to idle workers (`workers.wake`)."""
    return queue_name + ":wake"


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

    async def enqueue_many(self, jobs: Sequence[Job]) -> list[bool]:
        """`enqueue` for each job in one round trip (a Lua script doing what arq's `enqueue_job` does)."""
        if not jobs:
            return []
        now = timestamp_ms()
        keys: list[str] = []
        args: list[str] = [self.queue_name]
        for envelope_json, event_id, defer_until in jobs:
            score = to_unix_ms(defer_until) if defer_until is not None else now
            keys += [job_key_prefix + event_id, result_key_prefix + event_id]
            args += [event_id, str(score), str(score - now + expires_extra_ms),
                     serialize_job(APPLY_JOB, (envelope_json,), {}, None, now, serializer=serialize).decode()]
        args.append(wake_channel(self.queue_name))
        # redis-py types `eval` for its sync and async clients at once
        answers: list[int] = await self.redis.eval(_ENQUEUE_MANY, len(keys), *keys, *args)  # type: ignore[misc]
        return [bool(a) for a in answers]

    async def depth(self) -> int:
        return int(await self.redis.zcard(self.queue_name))
