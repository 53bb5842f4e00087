"""`publish(envelope)`: the one way any producer (ingress, scheduler, handlers, the app) emits an event.

The event is written to `event_inbox` first and only then enqueued, so an answer of "accepted" means
durable: a lost enqueue (Redis flushed or down) is repaired by the re-drive sweeper. A second publish
with the same dedupe key is acknowledged as a duplicate and not enqueued again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from events import inbox
from events.envelope import Envelope
from jobqueue import Queue
from store import Database

log = structlog.get_logger("studiovault.publish")
# The event is durable once in the inbox: a slow or frozen Redis must not hold the producer's answer
# (a gateway's 5 s timeout) hostage. Past this the enqueue is left to the re-drive.
ENQUEUE_TIMEOUT_S = 1.0


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

    async def publish(
        self, envelope: Envelope, status: str = "pending", note: str | None = None, *, producer: str | None = None
    ) -> Published:
        """Record, then enqueue. `status="ignored"` records an acknowledged event that is not applied.
        `producer`: the external producer's name (`POST /events`), None for the pipeline's own events.
        An event id reused under another dedupe key raises `ConstraintViolation` (a producer bug)."""
        envelope = self.stamp(envelope)
        (inserted,) = await self.db.batch([inbox.insert(envelope, self.clock(), status, note, producer=producer)])
        if not inserted:
            existing = await inbox.by_dedupe_key(self.db, envelope.dedupe_key)
            first_id = str(existing["id"]) if existing else envelope.event_id
            first_status = str(existing["status"]) if existing else "unknown"
            log.info("publish_duplicate", event_id=first_id, dedupe_key=envelope.dedupe_key, type=envelope.type,
                     org_id=envelope.org_id, branch_id=envelope.branch_id)
            # A redelivery (a gateway's retry carries a new envelope with the same dedupe key) or the same
            # envelope again while the first is still pending: its enqueue may have been lost, so make sure
            # the FIRST event is queued. arq refuses a job id it holds; the inbox guard applies it once.
            queued: bool | None = False
            if existing is not None and first_status == "pending" and status == "pending":
                queued = await self._enqueue(Envelope.model_validate_json(str(existing["payload_json"])))
            return Published(first_id, True, first_status, queued is True, enqueue_failed=queued is None)
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
            async with asyncio.timeout(ENQUEUE_TIMEOUT_S):
                return await self.queue.enqueue(envelope.model_dump_json(), envelope.event_id, envelope.available_at)
        except Exception as exc:  # noqa: BLE001 - any queue failure is repaired by the re-drive
            log.warning("enqueue_failed_redrive_will_retry", event_id=envelope.event_id, error=repr(exc))
            return None
