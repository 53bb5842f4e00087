"""What an operator does to a running pipeline: look at it, and replay or re-drive events."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from events import inbox
from events.envelope import Envelope
from events.publish import Publisher
from store import Database, Statement

log = structlog.get_logger("studiovault.operator")


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
    age = (inbox.ms(now) - int(created)) / 1000 if created is not None else None
    return PipelineStatus(queue_depth, by_status, age, by_status.get("dead", 0))


async def list_dead(db: Database, limit: int = 50) -> list[dict[str, Any]]:
    return await db.query(
        "SELECT id, type, org_id, branch_id, attempts, last_error, dead_at FROM event_inbox"
        " WHERE status = 'dead' ORDER BY dead_at DESC LIMIT ?",
        (limit,),
    )


async def dead_ids(db: Database) -> list[str]:
    rows = await db.query("SELECT id FROM event_inbox WHERE status = 'dead' ORDER BY dead_at")
    return [str(r["id"]) for r in rows]


async def replay_dead(
    db: Database,
    publisher: Publisher,
    event_ids: Sequence[str],
    progress: Callable[[int], None] | None = None,
) -> int:
    """Move dead events back to pending (fresh retry budget) and enqueue them. Returns how many."""
    now = datetime.now(UTC)
    replayed = 0
    for event_id in event_ids:
        row = await inbox.get(db, event_id)
        if row is None or row["status"] != "dead":
            log.warning("replay_skipped", event_id=event_id, status=row["status"] if row else "missing")
        else:
            (changed,) = await db.batch([inbox.revive(event_id, now)])
            if changed:
                await publisher.enqueue(Envelope.model_validate_json(str(row["payload_json"])))
                replayed += 1
                log.info("event_replayed", event_id=event_id, type=row["type"], org_id=row["org_id"],
                         branch_id=row["branch_id"])
        if progress:
            progress(1)
    return replayed
