"""The `invoice_due` producer: a daily cron publishes `NotificationDue(kind="invoice_due")` for issued
invoices reaching their due date, once per invoice and due date.

"Reaching" = due within the next `horizon` (24 h: the reminder goes out the day before or the day of)
and not more than `lookback` ago (7 days: a cron that missed some days catches up, old invoices are not
spammed). The dedupe key `notify:invoice_due:<invoice id>:<due_at ms>` makes every run idempotent
(several workers may run the cron at once); a changed due date earns a new reminder.
Invoices without a project (POS, subscriptions) have no client to notify through a project and are skipped.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from core.clock import epoch_ms
from events.envelope import envelope_for
from events.ids import new_id
from events.notifications import NotificationDue, notification_dedupe_key
from events.publish import Publisher
from store import Database

log = structlog.get_logger("studiovault.invoice_reminders")

PAGE = 500


async def publish_invoice_due(db: Database, publisher: Publisher, now: datetime,
                              horizon: timedelta = timedelta(days=1),
                              lookback: timedelta = timedelta(days=7)) -> tuple[int, int]:
    """Publish reminders for invoices due in (now - lookback, now + horizon]. Returns (examined, new)."""
    examined = published = 0
    after = ""
    while True:
        rows = await db.query(
            "SELECT i.id, i.branch_id, i.project_id, i.due_at, b.org_id FROM invoices i"
            " JOIN branches b ON b.id = i.branch_id"
            " WHERE i.status = 'issued' AND i.project_id IS NOT NULL AND i.due_at > ? AND i.due_at <= ?"
            " AND i.id > ? ORDER BY i.id LIMIT ?",
            (epoch_ms(now - lookback), epoch_ms(now + horizon), after, PAGE),
        )
        for row in rows:
            due_at = int(row["due_at"])
            event = NotificationDue(notification_id=new_id("ntf"), kind="invoice_due",
                                    project_id=row["project_id"], invoice_id=row["id"])
            key = notification_dedupe_key("invoice_due", row["id"], str(due_at))
            envelope = envelope_for(event, org_id=row["org_id"], branch_id=row["branch_id"], occurred_at=now,
                                    dedupe_key=key, correlation_id=key)  # the producer's own id for this reminder
            result = await publisher.publish(envelope)
            published += 0 if result.duplicate else 1
        examined += len(rows)
        if len(rows) < PAGE:
            break
        after = str(rows[-1]["id"])
    if examined:
        log.info("invoice_due_published", examined=examined, published=published)
    return examined, published
