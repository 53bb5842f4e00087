"""Claiming jobs in one Redis call and finishing them in one transaction (`workers.claim`), on a real
Redis: arq's conditions for starting a job, and its finishing commands, for many jobs at once."""

from __future__ import annotations

import asyncio
import functools
import time

import pytest
import redis.asyncio as aioredis
import redis.exceptions
from arq.constants import in_progress_key_prefix, job_key_prefix, retry_key_prefix

from workers.claim import Claimer, Finisher, finish_commands
from workers.jobrun import RETRY_KEY_TTL_S, Claimed

QUEUE = "test:claim"


def now_ms() -> int:
    return int(time.time() * 1000)


async def test_only_due_queued_jobs_nobody_holds_are_claimed(redis: aioredis.Redis) -> None:
    now = now_ms()
    await redis.zadd(QUEUE, {"due": now - 10, "held": now - 10, "later": now + 60_000, "other": now - 5})
    await redis.set(in_progress_key_prefix + "held", b"1")
    await redis.set(job_key_prefix + "due", b'{"t": "due"}')
    await redis.set(retry_key_prefix + "due", b"2")  # its third try
    await redis.set(job_key_prefix + "held", b"{}")
    claimer = Claimer(redis, QUEUE, 40_000)
    claimed = await claimer.claim(["due", "held", "later", "gone", "other"], now)
    # "other" has no job key (expired): claimed with an empty payload, for the runner to fail it as arq does
    assert claimed == [Claimed("due", now - 10, b'{"t": "due"}', 3), Claimed("other", now - 5, b"", 1)]
    ttl = await redis.pttl(in_progress_key_prefix + "due")
    assert 39_000 < ttl <= 40_000
    assert RETRY_KEY_TTL_S - 5 < await redis.ttl(retry_key_prefix + "due") <= RETRY_KEY_TTL_S
    assert await redis.exists(in_progress_key_prefix + "later") == 0
    assert await redis.get(retry_key_prefix + "held") is None  # tries are counted only for claimed jobs
    assert await claimer.claim(["due", "other"], now) == []  # held now: a second worker gets nothing


async def test_the_script_survives_redis_forgetting_it(redis: aioredis.Redis) -> None:
    claimer = Claimer(redis, QUEUE, 40_000)
    assert await claimer.claim(["nothing"], now_ms()) == []
    await redis.script_flush()
    await redis.zadd(QUEUE, {"job": now_ms() - 1})
    assert [job.job_id for job in await claimer.claim(["job"], now_ms())] == ["job"]


async def test_concurrent_finishes_share_a_transaction_and_each_job_is_finished(redis: aioredis.Redis) -> None:
    jobs = [f"job{i}" for i in range(30)]
    for job in jobs:
        await redis.zadd(QUEUE, {job: 1})
        await redis.set(in_progress_key_prefix + job, b"1")
        await redis.set(job_key_prefix + job, b"payload")
        await redis.set(retry_key_prefix + job, b"1")
    finisher = Finisher(redis)

    def done(job: str) -> functools.partial[None]:
        return functools.partial(finish_commands, queue_name=QUEUE, job_id=job, finish=True, result_data=None,
                                 result_px=None, incr_score=None, keep_in_progress=None)

    def retried(job: str) -> functools.partial[None]:  # a Retry: back in the queue later, keys kept
        return functools.partial(finish_commands, queue_name=QUEUE, job_id=job, finish=False, result_data=None,
                                 result_px=None, incr_score=5_000, keep_in_progress=None)

    await asyncio.gather(*(finisher.run(done(j) if i % 2 == 0 else retried(j)) for i, j in enumerate(jobs)))
    for i, job in enumerate(jobs):
        assert await redis.exists(in_progress_key_prefix + job) == 0
        if i % 2 == 0:
            assert await redis.zscore(QUEUE, job) is None
            assert await redis.exists(job_key_prefix + job, retry_key_prefix + job) == 0
        else:
            assert await redis.zscore(QUEUE, job) == 5_001
            assert await redis.exists(job_key_prefix + job) == 1


async def test_a_failed_transaction_is_every_callers_failure() -> None:
    broken = aioredis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    finisher = Finisher(broken)
    add = functools.partial(finish_commands, queue_name=QUEUE, job_id="x", finish=True, result_data=None,
                            result_px=None, incr_score=None, keep_in_progress=None)
    outcomes = await asyncio.gather(*(finisher.run(add) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(o, Exception) and not isinstance(o, asyncio.CancelledError) for o in outcomes)
    with pytest.raises(redis.exceptions.ConnectionError):
        await finisher.run(add)  # and the next transaction is tried afresh
    await broken.aclose()
