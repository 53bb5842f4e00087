"""A per-branch send cap: a fixed-window counter in Redis (INCR + EXPIRE, one round trip).

A burst above the cap is not refused but spread: the n-th send in a window of `limit` is told to wait
for window number `(n - 1) // limit` after this one, so 1,000 queued reminders for one branch go out
at `limit` per window instead of all waking at the same instant and contending again.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import redis.asyncio as aioredis


def window_start(now: datetime, window_s: int) -> datetime:
    epoch_s = int(now.timestamp())
    return datetime.fromtimestamp(epoch_s - epoch_s % window_s, now.tzinfo)


def wait_until(now: datetime, count: int, limit: int, window_s: int) -> datetime | None:
    """Pure part: the `count`-th send of this window (1-based) → None, or when its turn comes."""
    windows_ahead = (count - 1) // limit
    if windows_ahead == 0:
        return None
    return window_start(now, window_s) + timedelta(seconds=windows_ahead * window_s)


class RedisFixedWindow:
    """The `RateLimiter` port on Redis."""

    def __init__(self, redis: aioredis.Redis, prefix: str = "sv:notify:rate") -> None:
        self.redis = redis
        self.prefix = prefix

    async def acquire(self, key: str, now: datetime, limit: int, window_s: int = 60) -> datetime | None:
        start = window_start(now, window_s)
        counter = f"{self.prefix}:{key}:{int(start.timestamp())}"
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(counter)
            pipe.expire(counter, window_s * 2)
            count, _ = await pipe.execute()
        return wait_until(now, int(count), limit, window_s)
