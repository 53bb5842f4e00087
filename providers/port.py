"""The `Sender` port every notification provider implements, and what a send returns or raises.

Handlers import this module only; the HTTP senders behind it (`providers.whatsapp`, `.sms`, `.email`)
are wired by the composition root. A sender makes ONE request per `send()` and classifies the answer:

- success → `SendResult` (the provider's message id, when it gives one);
- `SendRetryable` → nothing was (knowingly) sent: rate limits, 5xx, timeouts, network errors. Carries
  the provider's `Retry-After` in seconds, when it gave one;
- `SendRejected` → permanent for this message on this channel: invalid recipient, rejected or unknown
  template, bad credentials. Retrying cannot help; the handler falls back or dead-letters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from events.notifications import Channel

__all__ = ["Channel", "OutboundMessage", "RateLimiter", "SendRejected", "SendResult", "SendRetryable", "Sender"]


@dataclass(frozen=True)
class OutboundMessage:
    """One rendered message for one recipient on one channel."""

    channel: Channel
    to: str  # E.164 with its '+' (whatsapp, sms: `+919876543210`) or an e-mail address
    kind: str  # the notification type: selects the provider template
    params: tuple[str, ...]  # template body parameters, in order
    reference: str  # our notification id: WhatsApp `biz_opaque_callback_data`, e-mail tag
    idempotency_key: str  # sent where the provider accepts one (e-mail)
    subject: str = ""  # e-mail only
    text: str = ""  # e-mail only
    html: str = ""  # e-mail only


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str | None
    note: str = ""  # e.g. "duplicate_of_accepted_request"


@dataclass
class SendRetryable(Exception):
    """Temporary: retry later (not before `retry_after_s`, when the provider said so)."""

    reason: str
    retry_after_s: float | None = None
    status: int | None = None
    code: str = field(default="")

    def __str__(self) -> str:
        return self.reason


@dataclass
class SendRejected(Exception):
    """Permanent for this message on this channel."""

    reason: str
    status: int | None = None
    code: str = field(default="")

    def __str__(self) -> str:
        return self.reason


class Sender(Protocol):
    """A notification provider for one channel."""

    channel: Channel

    async def send(self, message: OutboundMessage) -> SendResult:
        """Send once; raise `SendRetryable` or `SendRejected` when the provider did not accept it."""
        ...


class RateLimiter(Protocol):
    """A per-key send cap."""

    async def acquire(self, key: str, now: datetime, limit: int, window_s: int = 60) -> datetime | None:
        """None: go ahead now. Else the time to try again."""
        ...
