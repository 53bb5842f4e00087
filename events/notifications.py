"""Notification events: published by the payment flow (booking_confirmed), the due-date cron
(invoice_due) and the media flow (photos_ready); applied by `handlers.notifications`."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from events.envelope import Event
from events.ids import InvoiceId, NotificationId, ProjectId

Channel = Literal["whatsapp", "sms", "email"]


class NotificationDue(Event):
    """A message to a project's client is due. `notification_id` is the id of the `notifications` row
    its send will be recorded as, and the root of the provider idempotency key."""

    event_type = "notification.due"
    notification_id: NotificationId
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]{2,40}$")  # booking_confirmed, invoice_due, photos_ready, ...
    project_id: ProjectId
    invoice_id: InvoiceId | None = None
    channel: Channel | None = None  # None: the branch's preferred channel (WhatsApp by default)
    urgent: bool = False  # urgent messages ignore quiet hours

    def lock_key(self) -> str | None:
        return self.notification_id


def notification_dedupe_key(kind: str, subject_id: str, qualifier: str = "") -> str:
    """One notification of `kind` per subject (project or invoice), per qualifier (e.g. a due date)."""
    return f"notify:{kind}:{subject_id}" + (f":{qualifier}" if qualifier else "")
