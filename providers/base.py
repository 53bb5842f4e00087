"""The `Sender` port every notification provider implements, and what a send returns or raises.

A sender makes ONE HTTP request per `send()` and classifies the answer:

- success → `SendResult` (the provider's message id, when it gives one);
- `SendRetryable` → nothing was (knowingly) sent: rate limits, 5xx, timeouts, network errors. Carries
  the provider's `Retry-After` in seconds, when it gave one;
- `SendRejected` → permanent for this message on this channel: invalid recipient, rejected or unknown
  template, bad credentials. Retrying cannot help; the handler falls back or dead-letters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import httpx

Channel = Literal["whatsapp", "sms", "email"]


@dataclass(frozen=True)
class OutboundMessage:
    """One rendered message for one recipient on one channel."""

    channel: Channel
    to: str  # E.164 digits without '+' (whatsapp, sms) or an e-mail address
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


def retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (the delta-seconds form; an HTTP-date is ignored), else None."""
    value = response.headers.get("retry-after", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def transport_error(channel: Channel, exc: httpx.HTTPError) -> SendRetryable:
    """Network trouble: connect refused, timeouts, a dropped connection. Retry (see the handler's notes
    on the ambiguity of a read timeout for providers without idempotency keys)."""
    return SendRetryable(f"{channel}_transport: {type(exc).__name__}")


def json_body(response: httpx.Response) -> dict[str, object]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
