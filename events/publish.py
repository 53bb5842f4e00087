"""`publish(envelope)`: the one way any producer (ingress, scheduler, handlers, the app) emits an event.

The event is written to `event_inbox` first and only then enqueued, so an answer of "accepted" means
durable: a lost enqueue (Redis flushed or down) is repaired by the re-drive sweeper. A second publish
with the same dedupe key is acknowledged as a duplicate and not enqueued again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from events import inbox
from events.envelope import Envelope
from jobqueue import Queue
from store import Database

log = structlog.get_logger("studiovault.publish")


@dataclass(frozen=True)
class Published:
    event_id: str
    duplicate: bool  # the dedupe key was already in the inbox: nothing new was enqueued
    status: str  # the inbox status of the (first) event with this dedupe key
    enqueued: bool
    enqueue_failed: bool = False  # the queue refused with an error (the re-drive will enqueue it)


class Publisher:
    def __init__(self, db: Database, queue: Queue, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.db = db
        self.queue = queue
        self.clock = clock

    def stamp(self, envelope: Envelope) -> Envelope:
        """`envelope` with its received time (now) and correlation id (itself: a root event) when unset."""
        if envelope.received_at is not None and envelope.correlation_id is not None:
            return envelope
        return envelope.model_copy(update={"received_at": envelope.received_at or self.clock(),
                                           "correlation_id": envelope.correlation_id or envelope.event_id})

    async def publish(self, envelope: Envelope, status: str = "pending", note: str | None = None) -> Published:
        """Record, then enqueue. `status="ignored"` records an acknowledged event that is not applied."""
        envelope = self.stamp(envelope)
        (inserted,) = await self.db.batch([inbox.insert(envelope, self.clock(), status, note)])
        if not inserted:
            existing = await inbox.by_dedupe_key(self.db, envelope.dedupe_key)
            if existing is None:  # same event id reused with another dedupe key: a producer bug
                existing = await inbox.get(self.db, envelope.event_id)
            first_id = str(existing["id"]) if existing else envelope.event_id
            first_status = str(existing["status"]) if existing else "unknown"
            log.info("publish_duplicate", event_id=first_id, dedupe_key=envelope.dedupe_key, type=envelope.type,
                     org_id=envelope.org_id, branch_id=envelope.branch_id)
            # The same envelope again (a producer's retry, or our own write retried after a lost answer):
            # make sure it is queued. arq refuses a job id it holds, and the inbox guard applies it once.
            again = first_id == envelope.event_id and first_status == "pending" and status == "pending"
            enqueued = await self._enqueue(envelope) if again else False
            return Published(first_id, True, first_status, enqueued is True, enqueue_failed=enqueued is None)
        enqueued = None if status != "pending" else await self._enqueue(envelope)
        return Published(envelope.event_id, False, status, enqueued is True,
                         enqueue_failed=status == "pending" and enqueued is None)

    async def enqueue(self, envelope: Envelope) -> bool:
        """Enqueue an envelope already in the inbox. A queue failure is logged, not raised: the row is
        durable and the re-drive sweeper will enqueue it."""
        return await self._enqueue(envelope) is True

    async def _enqueue(self, envelope: Envelope) -> bool | None:
        """True: enqueued; False: the queue holds it already; None: the queue failed."""
        try:
            return await self.queue.enqueue(envelope.model_dump_json(), envelope.event_id, envelope.available_at)
        except Exception as exc:  # noqa: BLE001 - any queue failure is repaired by the re-drive
            log.warning("enqueue_failed_redrive_will_retry", event_id=envelope.event_id, error=repr(exc))
            return None
