"""The feed poller's cursor and lock on Redis (`FeedCursor`).

Three keys under one prefix: `<prefix>:cursor` (the last feed seq enqueued), `<prefix>:lock` (held for
one poll, with a TTL so a worker that dies mid-poll blocks the others for at most `lock_ms`) and
`<prefix>:spacing` (set for the spacing asked at each poll: with many workers the database still sees
one poll per spacing, not one per worker).
The cursor moves only forward, and only while the mover still holds the lock (a Lua script checks
both atomically): a worker that stalled past its lock's TTL cannot move the cursor back over rows
another worker has enqueued since.
"""

from __future__ import annotations

import secrets
from typing import Any

from jobqueue.port import FeedLease

# KEYS[1] lock, KEYS[2] cursor; ARGV[1] token, ARGV[2] seq.
_ADVANCE = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
local current = tonumber(redis.call('get', KEYS[2]) or '-1')
if tonumber(ARGV[2]) > current then redis.call('set', KEYS[2], ARGV[2]) end
return 1
"""
# KEYS[1] lock; ARGV[1] token.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def feed_prefix(queue_name: str) -> str:
    """The keys' prefix for a queue: the cursor is `<queue>:feed:cursor`, the lock `<queue>:feed:lock`."""
    return f"{queue_name}:feed"


class RedisFeedCursor:
    """`FeedCursor` on a redis-py asyncio client (arq's pool is one)."""

    def __init__(self, redis: Any, prefix: str, lock_ms: int = 15_000) -> None:
        self.redis = redis
        self.lock_key = f"{prefix}:lock"
        self.cursor_key = f"{prefix}:cursor"
        self.spacing_key = f"{prefix}:spacing"
        self.lock_ms = lock_ms

    async def acquire(self, spacing_s: float = 0.0) -> FeedLease | None:
        spacing_ms = int(spacing_s * 1000)
        if spacing_ms > 0 and not await self.redis.set(self.spacing_key, 1, nx=True, px=spacing_ms):
            return None
        token = secrets.token_hex(8)
        if not await self.redis.set(self.lock_key, token, nx=True, px=self.lock_ms):
            return None
        raw = await self.redis.get(self.cursor_key)
        return FeedLease(token, None if raw is None else int(raw))

    async def current(self) -> int | None:
        """The cursor as it is now (for operators), without the lock."""
        raw = await self.redis.get(self.cursor_key)
        return None if raw is None else int(raw)

    async def advance(self, lease: FeedLease, seq: int) -> bool:
        return bool(await self.redis.eval(_ADVANCE, 2, self.lock_key, self.cursor_key, lease.token, seq))

    async def release(self, lease: FeedLease) -> None:
        await self.redis.eval(_RELEASE, 1, self.lock_key, lease.token)
