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
from jobqueue import Queue
from store import Database

log = structlog.get_logger("studiovault.redrive")


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
        for row in rows:
            available = from_ms(int(row["available_at"]))
            payload = str(row["payload_json"])
            if await queue.enqueue(payload, str(row["id"]), available if available > now else None):
                enqueued += 1
            examined += 1
            if progress:
                progress(1)
        after = str(rows[-1]["id"])
    if examined:
        log.info("redrive_done", examined=examined, enqueued=enqueued)
    return examined, enqueued
