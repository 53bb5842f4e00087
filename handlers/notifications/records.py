"""The statements notification dispatch writes: send claims (`notification_sends`, migration 0006),
the `notifications` row and its charge (`notification_charges`, migration 0010), what providers
reported about a send (`notification_deliveries`), and audit rows by the org's system actor."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from events.ids import new_id
from events.notifications import Channel
from handlers.audit import audit_row
from handlers.notifications.delivery import Charge, Facts
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


def notification_row(s: Subject, charge: Charge, now_ms: int) -> list[Statement]:
    """The record of a sent message, exactly one per notification id (asserted in the batch), and its
    charge: `cost` is the rate-card amount once billable, 0 until then."""
    billable = charge.state == "billable"
    return [
        expect_rows("SELECT count(*) = 0 FROM notifications WHERE id = ?", [s.notification_id]),
        Statement(
            "INSERT INTO notifications (id, branch_id, project_id, type, channel, cost, billed, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
            (s.notification_id, s.branch_id, s.project_id, s.kind, charge.channel,
             charge.amount if billable else 0.0, now_ms),
        ),
        Statement(
            "INSERT INTO notification_charges (id, channel, state, amount, billable_at, reason, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (s.notification_id, charge.channel, charge.state, charge.amount, now_ms if billable else None,
             charge.reason, now_ms),
        ),
    ]


def charge_change(notification_id: str, old: Charge, new: Charge, now_ms: int) -> list[Statement]:
    """Move a notification's charge (at `old.version`); the `notifications` row follows: its channel is
    the charged send's, its cost the amount once billable (asserted still unbilled), else 0."""
    billable = new.state == "billable"
    return [
        expect_version("notification_charges", notification_id, old.version),
        expect_rows("SELECT count(*) FROM notifications WHERE id = ? AND billed = 0", [notification_id]),
        Statement(
            "UPDATE notification_charges SET channel = ?, state = ?, amount = ?, billable_at = ?, reason = ?,"
            " updated_at = ?, version = version + 1 WHERE id = ?",
            (new.channel, new.state, new.amount, now_ms if billable else None, (new.reason or "")[:500] or None,
             now_ms, notification_id),
        ),
        Statement("UPDATE notifications SET channel = ?, cost = ? WHERE id = ?",
                  (new.channel, new.amount if billable else 0.0, notification_id)),
    ]


FACT_COLUMNS = ("provider_message_id", "progress", "sent_at", "delivered_at", "read_at", "failed_at", "failure_code",
                "failure_reason", "provider_free", "fallback_at")


def facts_write(claim_id: str, notification_id: str, channel: Channel, facts: Facts, *, version: int | None,
                now_ms: int) -> list[Statement]:
    """Insert a send's delivery facts (asserting none exist) or update them at `version`."""
    values = tuple(int(v) if isinstance(v, bool) else v for v in (getattr(facts, c) for c in FACT_COLUMNS))
    if version is None:
        return [
            expect_rows("SELECT count(*) = 0 FROM notification_deliveries WHERE id = ?", [claim_id]),
            Statement(
                f"INSERT INTO notification_deliveries (id, notification_id, channel, {', '.join(FACT_COLUMNS)},"
                f" created_at, updated_at) VALUES (?, ?, ?, {', '.join('?' * len(FACT_COLUMNS))}, ?, ?)",
                (claim_id, notification_id, channel, *values, now_ms, now_ms),
            ),
        ]
    return [
        expect_version("notification_deliveries", claim_id, version),
        Statement(
            f"UPDATE notification_deliveries SET {', '.join(f'{c} = ?' for c in FACT_COLUMNS)}, updated_at = ?,"
            " version = version + 1 WHERE id = ?",
            (*values, now_ms, claim_id),
        ),
    ]


def audit(s: Subject, event_type: str, severity: str, details: dict[str, Any], now_ms: int) -> list[Statement]:
    """An append-only audit row by the org's system actor (created on first use)."""
    payload = {"notification_id": s.notification_id, "kind": s.kind, "event_id": s.event_id,
               "project_id": s.project_id, **details}
    return audit_row(new_id("aud"), s.org_id, s.branch_id, event_type=event_type, severity=severity, payload=payload,
                     now_ms=now_ms)
