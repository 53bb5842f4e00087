"""Notification events: published by the payment flow (booking_confirmed), the due-date cron
(invoice_due) and the media flow (photos_ready); provider delivery statuses, published by the ingress
from the status webhooks; and the SMS fallback a late failure asks for. Applied by
`handlers.notifications`."""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import AwareDatetime, Field

from events.envelope import Event
from events.ids import InvoiceId, NotificationId, ProjectId

Channel = Literal["whatsapp", "sms", "email"]
StatusProvider = Literal["whatsapp", "msg91", "resend"]
# The providers' statuses, normalised: sent < delivered < read is progress; failed is terminal unless a
# delivered/read is also seen; "info" (e-mail delayed, an unknown DLR code) is recorded, changes nothing.
DeliveryStatus = Literal["sent", "delivered", "read", "failed", "info"]

# The inbox needs an org for every event. A status whose message the ingress could not find yet (it can
# race the send's own batch) is filed under this placeholder (the same one the gateway ingress uses); the
# handler then takes the tenant from the send the status names, authenticated by the provider's signature.
UNATTRIBUTED_ORG = "org_00000000-0000-7000-8000-000000000000"


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


class NotificationStatusReported(Event):
    """A provider reported what happened to a message we sent (a WhatsApp status, an MSG91 delivery
    report, a Resend e-mail event). `provider_message_id` names the send; `notification_id` is the
    provider's echo of ours (WhatsApp `biz_opaque_callback_data`, the Resend `notification_id` tag),
    used when the message id is not recorded yet."""

    event_type = "notification.status_reported"
    provider: StatusProvider
    channel: Channel
    provider_message_id: str = Field(min_length=1, max_length=200)
    status: DeliveryStatus
    provider_status: str = Field(min_length=1, max_length=64)  # as the provider named it
    occurred_at: AwareDatetime  # the provider's time of the status
    notification_id: NotificationId | None = None
    error_code: str | None = Field(default=None, max_length=64)
    error_title: str | None = Field(default=None, max_length=500)
    billable: bool | None = None  # WhatsApp pricing: False when Meta says it does not charge the message
    pricing_category: str | None = Field(default=None, max_length=64)

    def lock_key(self) -> str | None:
        return f"{self.channel}:{self.provider_message_id}"


class NotificationFallbackDue(Event):
    """A WhatsApp message was accepted, then reported failed for a reason SMS can get around (e.g.
    131026 undeliverable): send the notification by SMS, once."""

    event_type = "notification.fallback_due"
    notification_id: NotificationId
    kind: str = Field(pattern=r"^[a-z][a-z0-9_]{2,40}$")
    project_id: ProjectId
    invoice_id: InvoiceId | None = None
    urgent: bool = False
    failed_channel: Channel = "whatsapp"
    reason: str = Field(max_length=500)

    def lock_key(self) -> str | None:
        return self.notification_id


def notification_dedupe_key(kind: str, subject_id: str, qualifier: str = "") -> str:
    """One notification of `kind` per subject (project or invoice), per qualifier (e.g. a due date)."""
    return f"notify:{kind}:{subject_id}" + (f":{qualifier}" if qualifier else "")


def fallback_dedupe_key(notification_id: str) -> str:
    """One SMS fallback per notification, however many failures are reported."""
    return f"notify:fallback:{notification_id}"


def status_dedupe_key(provider: StatusProvider, *parts: str) -> str:
    """The same provider status delivered again → the same key (a hash when the natural key is long)."""
    natural = ":".join(parts)
    key = f"status:{provider}:{natural}"
    if len(key) <= 200:
        return key
    return f"status:{provider}:sha256:{hashlib.sha256(natural.encode()).hexdigest()}"
