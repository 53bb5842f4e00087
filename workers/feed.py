"""The inbox feed poller's loop, one per worker process (`producers.inbox_feed` does each poll).

It polls every `SV_FEED_POLL_INTERVAL` (0.25 s, jittered), at once again after a full page, and backs
off (up to 5 s) while the database or Redis fails; with several workers the feed is still read about
once per interval (a spacing key shared in Redis). Feed rows behind the cursor and older than
`SV_FEED_RETENTION_S` are pruned about once a minute. `stop()` lets a poll in progress finish (bounded)
before cancelling, so no Redis exchange is cut in half.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from datetime import timedelta
from typing import Any

import structlog

from jobqueue import FeedCursor
from producers.inbox_feed import poll_feed, prune_feed
from workers.deps import Deps

log = structlog.get_logger("studiovault.feed")
PRUNE_EVERY_S = 60.0
MAX_BACKOFF_S = 5.0
_jitter = random.SystemRandom()


class FeedPoller:
    def __init__(self, deps: Deps, cursor: FeedCursor) -> None:
        self.deps = deps
        self.cursor = cursor
        self.stopping = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.polls = 0

    def start(self) -> FeedPoller:
        self.task = asyncio.create_task(self._run(), name="inbox-feed-poller")
        return self

    async def stop(self, within: float = 5.0) -> None:
        self.stopping.set()
        task, self.task = self.task, None
        if task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), within)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def _run(self) -> None:
        config = self.deps.settings.worker
        interval, failures, pruned_at = config.feed_poll_interval, 0, time.monotonic()
        draining = False
        while not self.stopping.is_set():
            try:
                # Spacing = the shortest jittered sleep: one worker is never held back by its own last poll,
                # several together read the feed at most once per 0.8 interval. A full page drains at once.
                result = await poll_feed(self.deps.db, self.deps.queue, self.cursor, self.deps.clock(),
                                         limit=config.feed_page_size, spacing_s=0.0 if draining else interval * 0.8)
                draining = result.full
                self.polls += 1
                if time.monotonic() - pruned_at >= PRUNE_EVERY_S:
                    pruned_at = time.monotonic()
                    await prune_feed(self.deps.db, self.cursor, self.deps.clock(),
                                     timedelta(seconds=config.feed_retention_s))
                failures = 0
            except Exception as exc:  # noqa: BLE001 - a failed poll moved nothing: the next one retries it
                failures += 1
                log.warning("feed_poll_failed", error=repr(exc)[:500], failures=failures)
                await self._sleep(min(interval * 2**failures, MAX_BACKOFF_S))
                continue
            if not result.full:
                await self._sleep(interval * _jitter.uniform(0.8, 1.2))


async def stop_feed(ctx: dict[str, Any] | None) -> None:
    """Stop the worker's feed poller, if it runs one (before anything it uses is closed)."""
    poller = (ctx or {}).pop("feed_poller", None)
    if isinstance(poller, FeedPoller):
        await poller.stop()
