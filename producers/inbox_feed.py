"""The inbox feed poller: enqueue, within a poll interval, the events other producers wrote straight
into the inbox (the app's transactional outbox on D1), in the order they COMMITTED.

Migration 0008's trigger appends every pending row whose writer does not enqueue it itself
(`self_enqueued = 0`) to `inbox_feed`, whose `seq` the database assigns at commit (SQLite and D1 have
one writer: seq order is commit order). A poll reads the rows after the shared cursor through the
primary key — `WHERE seq > ? ORDER BY seq LIMIT ?`, plus one primary-key lookup per row into
`event_inbox` — so its cost depends on the rows waiting, never on the size of the inbox or the feed.
An event id says nothing about arrival: a desktop record synced days late has a days-old UUIDv7 and
the next seq, so it is picked up like any other.

Of several workers, one polls at a time (a Redis lock per poll) and the feed is read at most once per
spacing however many workers run; the cursor moves only after the page is enqueued, and only forward.
Enqueuing twice is harmless (arq refuses a job id it holds; the inbox guard applies an event once),
losing a row is not: so a failure leaves the cursor where it was. The
re-drive sweeper (every minute) stays the safety net for anything the feed misses (a Redis flush that
takes the cursor with it starts again from the oldest feed row kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from core.clock import epoch_ms, from_ms
from jobqueue import FeedCursor, Queue
from store import Database, Statement

log = structlog.get_logger("studiovault.feed")

POLL_SQL = (
    "SELECT f.seq, f.event_id, i.payload_json, i.status, i.available_at"
    " FROM inbox_feed AS f LEFT JOIN event_inbox AS i ON i.id = f.event_id"
    " WHERE f.seq > ? ORDER BY f.seq LIMIT ?"
)
PRUNE_BATCH = 5000


@dataclass(frozen=True)
class FeedPoll:
    """One poll: `polled` False when another worker held the lock; `rows` read; `enqueued` accepted by
    the queue (the rest were not pending, or already queued); `cursor` after the poll."""

    polled: bool
    rows: int = 0
    enqueued: int = 0
    cursor: int | None = None
    full: bool = False  # a whole page: there may be more, poll again at once


async def start_of_feed(db: Database) -> int:
    """The cursor that replays every feed row still kept (where a lost cursor starts)."""
    rows = await db.query("SELECT coalesce(min(seq), 1) - 1 AS start FROM inbox_feed")
    return int(rows[0]["start"])


async def poll_feed(db: Database, queue: Queue, cursor: FeedCursor, now: datetime, *, limit: int = 500,
                    spacing_s: float = 0.0) -> FeedPoll:
    """Enqueue the pending events after the cursor (up to `limit` feed rows), then advance it. Skipped
    (`polled` False) while another worker polls, or polled less than `spacing_s` ago."""
    lease = await cursor.acquire(spacing_s)
    if lease is None:
        return FeedPoll(polled=False)
    try:
        after = lease.cursor if lease.cursor is not None else await start_of_feed(db)
        rows = await db.query(POLL_SQL, (after, limit))
        enqueued = 0
        for row in rows:
            if row["status"] != "pending":  # applied already (e.g. by a re-drive), dead, or ignored
                continue
            available = from_ms(int(row["available_at"]))
            defer = available if available > now else None
            if await queue.enqueue(str(row["payload_json"]), str(row["event_id"]), defer):
                enqueued += 1
        last = int(rows[-1]["seq"]) if rows else after
        if last != lease.cursor and not await cursor.advance(lease, last):
            log.warning("feed_lock_lost", cursor=after, last_seq=last)  # the next holder re-reads: duplicates only
        if enqueued:
            log.info("feed_enqueued", rows=len(rows), enqueued=enqueued, last_seq=last)
        return FeedPoll(polled=True, rows=len(rows), enqueued=enqueued, cursor=last, full=len(rows) >= limit)
    finally:
        await cursor.release(lease)


async def prune_feed(db: Database, cursor: FeedCursor, now: datetime, keep: timedelta) -> int:
    """Delete feed rows already behind the cursor and older than `keep`; returns how many (≤ PRUNE_BATCH).
    Nothing is pruned without a cursor: every row kept might still be waiting."""
    lease = await cursor.acquire()
    if lease is None:
        return 0
    try:
        if lease.cursor is None:
            return 0
        (deleted,) = await db.batch([Statement(
            "DELETE FROM inbox_feed WHERE seq IN (SELECT seq FROM inbox_feed WHERE seq <= ? AND created_at < ?"
            " ORDER BY seq LIMIT ?)", (lease.cursor, epoch_ms(now - keep), PRUNE_BATCH))])
    finally:
        await cursor.release(lease)
    if deleted:
        log.info("feed_pruned", rows=deleted)
    return deleted
