"""Notification dispatch: a due message sent once over WhatsApp, SMS or e-mail, recorded for billing."""

from handlers.notifications.handler import dispatch_notification

__all__ = ["dispatch_notification"]
