"""The re-drive sweeper: re-enqueue inbox rows still pending after a grace period.

Covers every way a job can vanish while its event is durable: Redis flushed or restarted without
persistence, an enqueue that failed after the inbox write, a job lost with a killed worker. Enqueuing
an event whose job is still queued is refused by arq (same job id) and costs nothing; applying an
event twice is impossible (the inbox guard), so re-driving too eagerly is safe, only wasteful.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from core.clock import epoch_ms, from_ms
from events import inbox
from jobqueue import Job, Queue, enqueue_all
from store import Database

log = structlog.get_logger("studiovault.redrive")
# Jobs per round trip to a queue that enqueues in batches: a Redis that lost its data may need every
# pending event back at once (100,000 events are 1,000 calls, not 400,000 of arq's one-by-one).
ENQUEUE_CHUNK = 100


async def redrive(
    db: Database,
    queue: Queue,
    now: datetime,
    grace: timedelta,
    progress: Callable[[int], None] | None = None,
) -> tuple[int, int]:
    """Re-enqueue pending events accepted before `now - grace`. Returns (examined, enqueued)."""
    cutoff = epoch_ms(now - grace)
    examined = enqueued = 0
    after = ""
    while True:
        rows = await inbox.pending_before(db, cutoff, after)
        if not rows:
            break
        jobs: list[Job] = []
        for row in rows:
            available = from_ms(int(row["available_at"]))
            jobs.append((str(row["payload_json"]), str(row["id"]), available if available > now else None))
        for start in range(0, len(jobs), ENQUEUE_CHUNK):
            chunk = jobs[start:start + ENQUEUE_CHUNK]
            enqueued += sum(await enqueue_all(queue, chunk))
            examined += len(chunk)
            if progress:
                progress(len(chunk))
        after = str(rows[-1]["id"])
    if examined:
        log.info("redrive_done", examined=examined, enqueued=enqueued)
    return examined, enqueued

