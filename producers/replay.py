"""Dead-letter replay: an operator's "try again" after fixing what killed the events."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import structlog

from events import inbox
from events.envelope import Envelope
from events.publish import Publisher
from store import Database

log = structlog.get_logger("studiovault.operator")


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
