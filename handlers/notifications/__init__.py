"""Notifications: a due message sent once over WhatsApp, SMS or e-mail, recorded for billing; the
providers' delivery statuses folded into each send; the SMS fallback of a late WhatsApp failure."""

from handlers.notifications.handler import dispatch_notification, send_fallback
from handlers.notifications.status import apply_delivery_status

__all__ = ["apply_delivery_status", "dispatch_notification", "send_fallback"]
