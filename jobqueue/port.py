"""The `Queue` port: where accepted events go to be applied. Producers and the re-drive use only this."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable


class Queue(Protocol):
    """A job queue keyed by event id: enqueuing an id the queue already holds is refused (False)."""

    async def enqueue(self, envelope_json: str, event_id: str, defer_until: datetime | None = None) -> bool:
        """Enqueue the envelope's apply job; False when the queue already holds this event id."""
        ...

    async def depth(self) -> int:
        """Jobs waiting or scheduled."""
        ...


# One job to enqueue: (envelope_json, event_id, defer_until), as `Queue.enqueue` takes them.
Job = tuple[str, str, datetime | None]


@runtime_checkable
class BatchQueue(Queue, Protocol):
    """A `Queue` that can enqueue several jobs in one round trip (the ingress groups its requests' jobs)."""

    async def enqueue_many(self, jobs: Sequence[Job]) -> list[bool]:
        """`enqueue` for each job, in one call: True enqueued, False already held; raises if the queue fails."""
        ...


async def enqueue_all(queue: Queue, jobs: Sequence[Job]) -> list[bool]:
    """`enqueue` for each job: in one call where the queue takes batches, else one by one."""
    if isinstance(queue, BatchQueue):
        return list(await queue.enqueue_many(jobs))
    return [await queue.enqueue(*job) for job in jobs]


@dataclass(frozen=True)
class FeedLease:
    """The right to poll the inbox feed once: `token` fences the cursor update, `cursor` is the last
    feed seq enqueued (None: no cursor yet, e.g. a first start or a flushed Redis)."""

    token: str
    cursor: int | None


class FeedCursor(Protocol):
    """The feed poller's shared cursor, and a short lock so that of several workers one polls at a time."""

    async def acquire(self, spacing_s: float = 0.0) -> FeedLease | None:
        """Take the lock for one poll; None when another worker holds it, or (`spacing_s` > 0) when any
        worker polled less than `spacing_s` ago: however many workers run, the feed is read at most
        once per spacing (a worker draining a full page passes 0)."""
        ...

    async def advance(self, lease: FeedLease, seq: int) -> bool:
        """Move the cursor forward to `seq`, only while `lease` still holds the lock (False otherwise)."""
        ...

    async def release(self, lease: FeedLease) -> None:
        """Give the lock back (a no-op when it has expired and another worker took it)."""
        ...
