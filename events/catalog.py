"""Every event type the pipeline knows, in one place, and which ones producers outside it may publish.

`EVENT_TYPES` is what the schema export writes a JSON Schema for and what the routing table must route
(tested); `EXTERNALLY_PUBLISHABLE` is the explicit list of types the app's outbox and `POST /events`
accept — payments and billing come only from the pipeline's own ingress and crons (refused with 403).
"""

from __future__ import annotations

from events.billing import BillingPeriodClosed
from events.envelope import Event
from events.media import MediaDeleted, MediaUploaded
from events.notifications import NotificationDue, NotificationFallbackDue, NotificationStatusReported
from events.payments import PAYMENT_FACTS, GatewayEventIgnored
from events.registry import EventRegistry

EVENT_TYPES: tuple[type[Event], ...] = (
    NotificationDue, NotificationStatusReported, NotificationFallbackDue, MediaUploaded, MediaDeleted,
    *PAYMENT_FACTS, GatewayEventIgnored, BillingPeriodClosed,
)
EXTERNALLY_PUBLISHABLE: frozenset[str] = frozenset({"notification.due", "media.uploaded", "media.deleted"})
REGISTRY = EventRegistry(EVENT_TYPES)


def publishable_types() -> list[type[Event]]:
    """The event classes external producers may publish, sorted by type and version."""
    return sorted((c for c in EVENT_TYPES if c.event_type in EXTERNALLY_PUBLISHABLE),
                  key=lambda c: (c.event_type, c.schema_version))
