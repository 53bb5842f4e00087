"""`GroupedQueue`: concurrent enqueues share one Redis round trip (`BatchQueue.enqueue_many`).

arq's own enqueue is three round trips (WATCH, EXISTS, MULTI/EXEC), and the Redis client's I/O was the
ingress's next largest cost after the database. Natural batching (`core.batching`): the first enqueue
goes at once, those arriving meanwhile go together next. Each caller learns its own answer (enqueued,
or already held); a failure of the call reaches every caller in it, whose inbox row is already durable
(the publisher leaves it to the re-drive, as it does for a lone enqueue that fails).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from core.batching import NaturalBatcher
from jobqueue.port import BatchQueue, Job

MAX_GROUP_JOBS = 200


class GroupedQueue:
    """A `Queue` whose concurrent `enqueue`s go to `inner.enqueue_many` together."""

    def __init__(self, inner: BatchQueue, max_jobs: int = MAX_GROUP_JOBS) -> None:
        self.inner = inner
        self._enqueues: NaturalBatcher[Job, bool] = NaturalBatcher(self._enqueue_group, max_items=max_jobs)

    async def enqueue(self, envelope_json: str, event_id: str, defer_until: datetime | None = None) -> bool:
        return await self._enqueues.submit((envelope_json, event_id, defer_until))

    async def _enqueue_group(self, jobs: Sequence[Job]) -> list[bool | Exception]:
        return list(await self.inner.enqueue_many(jobs))

    async def depth(self) -> int:
        return await self.inner.depth()
