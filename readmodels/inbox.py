"""The inbox as an operator sees it: status counts, the oldest pending event, dead letters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.clock import epoch_ms
from store import Database, Statement


@dataclass(frozen=True)
class PipelineStatus:
    queue_depth: int
    inbox: dict[str, int]
    oldest_pending_age_s: float | None
    dead: int


async def pipeline_status(db: Database, queue_depth: int, now: datetime | None = None) -> PipelineStatus:
    now = now or datetime.now(UTC)
    counts, oldest = await db.query_many([
        Statement("SELECT status, count(*) AS n FROM event_inbox GROUP BY status"),
        Statement("SELECT min(created_at) AS created_at FROM event_inbox WHERE status = 'pending'"),
    ])
    by_status = {str(r["status"]): int(r["n"]) for r in counts}
    created = oldest[0]["created_at"] if oldest and oldest[0]["created_at"] is not None else None
    age = (epoch_ms(now) - int(created)) / 1000 if created is not None else None
    return PipelineStatus(queue_depth, by_status, age, by_status.get("dead", 0))


async def feed_waiting(db: Database, cursor: int | None) -> int:
    """Feed rows (outbox events) after the feed poller's cursor: written, not yet enqueued by the poller."""
    rows = await db.query("SELECT count(*) AS n FROM inbox_feed WHERE seq > ?", (-1 if cursor is None else cursor,))
    return int(rows[0]["n"])


async def list_dead(db: Database, limit: int = 50) -> list[dict[str, Any]]:
    return await db.query(
        "SELECT id, type, org_id, branch_id, attempts, last_error, dead_at FROM event_inbox"
        " WHERE status = 'dead' ORDER BY dead_at DESC LIMIT ?",
        (limit,),
    )


async def dead_ids(db: Database) -> list[str]:
    rows = await db.query("SELECT id FROM event_inbox WHERE status = 'dead' ORDER BY dead_at")
    return [str(r["id"]) for r in rows]
