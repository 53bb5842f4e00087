"""SQL for `event_inbox`, the durable record of every accepted event (migration 0003).

An event's life: `pending` (accepted, not yet applied) → `applied` (its effect committed in the same
batch) | `dead` (permanent error or retries exhausted; replayable) | `ignored` (accepted and
acknowledged, deliberately not applied, e.g. a gateway event type we do not handle).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.clock import epoch_ms as ms
from events.envelope import Envelope
from store import Database, Statement, expect_rows


def insert(
    envelope: Envelope,
    now: datetime,
    status: str = "pending",
    note: str | None = None,
    *,
    producer: str | None = None,
    self_enqueued: bool = True,
) -> Statement:
    """Record `envelope`. A second event with the same dedupe key changes nothing (0 rows); an event id
    reused under ANOTHER dedupe key is a producer bug and fails the batch (`ConstraintViolation`),
    rather than dropping the event silently (the app's outbox behaves the same).

    `producer`: None for the pipeline's own events, else the external producer's name.
    `self_enqueued`: the caller enqueues the event itself (the Publisher, the worker's follow-ups), so
    the feed trigger (migration 0008) leaves it out; False hands it to the feed poller."""
    available = ms(envelope.available_at) if envelope.available_at else ms(now)
    return Statement(
        "INSERT INTO event_inbox (id, type, schema_version, org_id, branch_id, dedupe_key, payload_json, status,"
        " last_error, occurred_at, created_at, available_at, updated_at, producer, self_enqueued)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING",
        (envelope.event_id, envelope.type, envelope.schema_version, envelope.org_id, envelope.branch_id,
         envelope.dedupe_key, envelope.model_dump_json(), status, note, ms(envelope.occurred_at), ms(now),
         available, ms(now), producer, int(self_enqueued)),
    )


def guard_pending(event_id: str) -> Statement:
    """Abort the batch with `AlreadyApplied` unless the event is still pending: exactly-once effect."""
    return expect_rows("SELECT count(*) FROM event_inbox WHERE id = ? AND status = 'pending'", [event_id], "inbox")


def mark_applied(event_id: str, now: datetime, outcome: str = "applied") -> Statement:
    return Statement(
        "UPDATE event_inbox SET status = ?, applied_at = ?, updated_at = ?, attempts = attempts + 1,"
        " version = version + 1 WHERE id = ? AND status = 'pending'",
        (outcome, ms(now), ms(now), event_id),
    )


def mark_dead(event_id: str, reason: str, now: datetime) -> Statement:
    return Statement(
        "UPDATE event_inbox SET status = 'dead', last_error = ?, dead_at = ?, updated_at = ?,"
        " attempts = attempts + 1, version = version + 1 WHERE id = ? AND status = 'pending'",
        (reason[:2000], ms(now), ms(now), event_id),
    )


def record_failure(event_id: str, error: str, now: datetime, retry_at: datetime) -> Statement:
    return Statement(
        "UPDATE event_inbox SET attempts = attempts + 1, last_error = ?, updated_at = ?, available_at = ?,"
        " version = version + 1 WHERE id = ? AND status = 'pending'",
        (error[:2000], ms(now), ms(retry_at), event_id),
    )


def defer(event_id: str, until: datetime, now: datetime, note: str) -> Statement:
    return Statement(
        "UPDATE event_inbox SET available_at = ?, updated_at = ?, last_error = ?, version = version + 1"
        " WHERE id = ? AND status = 'pending'",
        (ms(until), ms(now), note, event_id),
    )


def revive(event_id: str, now: datetime) -> Statement:
    """A dead event back to pending with a fresh retry budget (its last error is kept for history)."""
    return Statement(
        "UPDATE event_inbox SET status = 'pending', attempts = 0, dead_at = NULL, available_at = ?, updated_at = ?,"
        " version = version + 1 WHERE id = ? AND status = 'dead'",
        (ms(now), ms(now), event_id),
    )


async def get(db: Database, event_id: str) -> dict[str, Any] | None:
    rows = await db.query("SELECT * FROM event_inbox WHERE id = ?", (event_id,))
    return rows[0] if rows else None


async def by_dedupe_key(db: Database, dedupe_key: str) -> dict[str, Any] | None:
    rows = await db.query("SELECT id, status, payload_json FROM event_inbox WHERE dedupe_key = ?", (dedupe_key,))
    return rows[0] if rows else None


async def pending_before(
    db: Database, created_before: int, after_id: str = "", limit: int = 100
) -> list[dict[str, Any]]:
    """Pending events accepted before `created_before` (ms), in id order, for the re-drive sweeper."""
    return await db.query(
        "SELECT id, payload_json, available_at FROM event_inbox"
        " WHERE status = 'pending' AND created_at < ? AND id > ? ORDER BY id LIMIT ?",
        (created_before, after_id, limit),
    )
