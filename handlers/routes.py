"""The routing table: every event type the pipeline applies, and its one handler."""

from __future__ import annotations

from events.billing import BillingPeriodClosed
from events.envelope import Event
from events.media import MediaDeleted, MediaUploaded
from events.notifications import NotificationDue, NotificationFallbackDue, NotificationStatusReported
from events.payments import (
    DisputeCreated,
    DisputeLost,
    DisputeWon,
    GatewayEventIgnored,
    PaymentCaptured,
    PaymentFailed,
    RefundProcessed,
    RefundReversed,
)
from handlers.base import Handler, Router
from handlers.billing import bill_period
from handlers.media import record_media_uploaded, remove_deleted_media
from handlers.notifications import apply_delivery_status, dispatch_notification, send_fallback
from handlers.payments import (
    acknowledge_ignored,
    record_capture,
    record_dispute_lost,
    record_dispute_opened,
    record_dispute_won,
    record_failed_payment,
    record_refund,
    record_refund_reversal,
)

HANDLERS: dict[type[Event], Handler] = {
    MediaUploaded: record_media_uploaded,
    MediaDeleted: remove_deleted_media,
    PaymentCaptured: record_capture,
    PaymentFailed: record_failed_payment,
    RefundProcessed: record_refund,
    RefundReversed: record_refund_reversal,
    DisputeCreated: record_dispute_opened,
    DisputeWon: record_dispute_won,
    DisputeLost: record_dispute_lost,
    GatewayEventIgnored: acknowledge_ignored,
    BillingPeriodClosed: bill_period,
    NotificationDue: dispatch_notification,
    NotificationStatusReported: apply_delivery_status,
    NotificationFallbackDue: send_fallback,
}

ROUTER = Router(HANDLERS)
