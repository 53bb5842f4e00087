"""The statements notification dispatch writes: send claims (`notification_sends`, migration 0006),
the billable `notifications` row, and audit rows by the org's system actor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from events.ids import new_id
from events.notifications import Channel
from handlers.audit import audit_row
from handlers.notifications.plan import Claim
from store import Statement, expect_rows, expect_version


@dataclass(frozen=True)
class Subject:
    """Who and what a notification is about: the ids every record carries."""

    notification_id: str
    kind: str
    event_id: str
    org_id: str
    branch_id: str
    project_id: str

    def claim_id(self, channel: Channel) -> str:
        """The claim's key, and the provider idempotency key: one logical send, one key, forever."""
        return f"{self.notification_id}/{channel}"


def claim_new(s: Subject, channel: Channel, now_ms: int) -> list[Statement]:
    """Claim a first send on `channel`: aborts with VersionConflict if another worker claimed it first."""
    claim_id = s.claim_id(channel)
    return [
        expect_rows("SELECT count(*) = 0 FROM notification_sends WHERE id = ?", [claim_id]),
        Statement(
            "INSERT INTO notification_sends (id, notification_id, channel, event_id, org_id, branch_id, status,"
            " attempts, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'sending', 1, ?, ?)",
            (claim_id, s.notification_id, channel, s.event_id, s.org_id, s.branch_id, now_ms, now_ms),
        ),
    ]


def claim_again(s: Subject, claim: Claim, now_ms: int) -> list[Statement]:
    """Re-claim a 'retry' (or, on replay, 'failed'; for e-mail, 'sending') claim at its version."""
    claim_id = s.claim_id(claim.channel)
    return [
        expect_version("notification_sends", claim_id, claim.version),
        Statement(
            "UPDATE notification_sends SET status = 'sending', attempts = attempts + 1, event_id = ?,"
            " updated_at = ?, version = version + 1 WHERE id = ?",
            (s.event_id, now_ms, claim_id),
        ),
    ]


def set_status(s: Subject, claim: Claim, status: str, now_ms: int, *, error: str | None = None,
               message_id: str | None = None) -> list[Statement]:
    """Move a claim we hold (at `claim.version`) to `status`."""
    claim_id = s.claim_id(claim.channel)
    return [
        expect_version("notification_sends", claim_id, claim.version),
        Statement(
            "UPDATE notification_sends SET status = ?, last_error = COALESCE(?, last_error),"
            " provider_message_id = COALESCE(?, provider_message_id), updated_at = ?, version = version + 1"
            " WHERE id = ?",
            (status, error[:500] if error else None, message_id, now_ms, claim_id),
        ),
    ]


def failed_without_request(s: Subject, channel: Channel, claim: Claim | None, reason: str,
                           now_ms: int) -> list[Statement]:
    """Record a channel that failed before any request (no recipient, channel not configured)."""
    if claim is not None:
        return set_status(s, claim, "failed", now_ms, error=reason)
    return [Statement(
        "INSERT INTO notification_sends (id, notification_id, channel, event_id, org_id, branch_id, status,"
        " last_error, attempts, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'failed', ?, 0, ?, ?)"
        " ON CONFLICT DO NOTHING",
        (s.claim_id(channel), s.notification_id, channel, s.event_id, s.org_id, s.branch_id, reason[:500],
         now_ms, now_ms),
    )]


def notification_row(s: Subject, channel: Channel, cost: float, now_ms: int) -> list[Statement]:
    """The billable record of a sent message: exactly one per notification id (asserted in the batch)."""
    return [
        expect_rows("SELECT count(*) = 0 FROM notifications WHERE id = ?", [s.notification_id]),
        Statement(
            "INSERT INTO notifications (id, branch_id, project_id, type, channel, cost, billed, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
            (s.notification_id, s.branch_id, s.project_id, s.kind, channel, cost, now_ms),
        ),
    ]


def audit(s: Subject, event_type: str, severity: str, details: dict[str, Any], now_ms: int) -> list[Statement]:
    """An append-only audit row by the org's system actor (created on first use)."""
    payload = {"notification_id": s.notification_id, "kind": s.kind, "event_id": s.event_id,
               "project_id": s.project_id, **details}
    return audit_row(new_id("aud"), s.org_id, s.branch_id, event_type=event_type, severity=severity, payload=payload,
                     now_ms=now_ms)
