"""Resend e-mail webhook events, signed the way Svix signs them (the Standard Webhooks scheme).

Sources (see /work/notes/notify.md):

- Event types: https://resend.com/docs/webhooks/event-types (email.sent, .delivered, .delivery_delayed,
  .complained, .bounced, .opened, .clicked, .failed, .scheduled, .suppressed, .received; the
  resend-node SDK type `WebhookEvent` lists sent/delivered/delivery_delayed/complained/bounced/opened/
  clicked/received/failed: github.com/resend/resend-node src/webhooks/interfaces/webhook-event.interface.ts).
- Payload: `{"type", "created_at" (ISO 8601, when the event was created), "data": {"broadcast_id"?,
  "created_at" (when the e-mail was created), "email_id", "from", "to": [...], "subject",
  "template_id"?, "tags": {name: value}, + "bounce": {"message", "subType", "type"} on email.bounced,
  "failed": {"reason"} on email.failed}}`:
  https://resend.com/docs/webhooks/emails/bounced, https://resend.com/docs/webhooks/emails/failed,
  https://resend.com/docs/dashboard/webhooks/event-types (sent/delivered samples).
  Note: the send API takes tags as `[{"name", "value"}]`; the webhook returns them as an object.
- Signature: headers `svix-id` (message id, the SAME on every retry of one message), `svix-timestamp`
  (unix seconds), `svix-signature` (space-separated `v1,<base64>` list); signed content
  `f"{id}.{timestamp}.{raw body}"`, HMAC-SHA256 keyed with base64-decoded secret after `whsec_`:
  https://docs.svix.com/receiving/verifying-payloads/how-manual ; Resend's own verify() hands these
  three headers to `svix.Webhook.verify` (resend-node src/webhooks/webhooks.ts) and documents the
  headers at https://resend.com/docs/webhooks/verify-webhooks-requests. Same algorithm as the
  Standard Webhooks spec with `webhook-` header names (Svix libraries accept both prefixes);
  libraries reject timestamps more than 5 minutes from now.
- Retries (Svix): immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: https://docs.svix.com/retries
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import string
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Literal

import httpx

EventType = Literal[
    "email.sent", "email.delivered", "email.delivery_delayed", "email.complained", "email.bounced",
    "email.opened", "email.clicked", "email.failed", "email.scheduled", "email.suppressed", "email.received",
]
HeaderPrefix = Literal["svix", "webhook"]

SENDER = "StudioVault <notify@studiovault.example>"
_ALPHABET = string.ascii_letters + string.digits


def make_secret(key: bytes | None = None) -> str:
    """A signing secret as Resend shows it: `whsec_` + base64 of the key bytes."""
    return "whsec_" + base64.b64encode(key if key is not None else secrets.token_bytes(24)).decode()


def secret_key(secret: str) -> bytes:
    raw = secret.removeprefix("whsec_")
    return base64.b64decode(raw + "=" * (-len(raw) % 4))


def new_message_id() -> str:
    """A Svix message id (`msg_` + 27 base62 characters, KSUID-like)."""
    return "msg_" + "".join(secrets.choice(_ALPHABET) for _ in range(27))


def new_email_id() -> str:
    """Resend e-mail ids are UUIDs (what `POST /emails` returned as `id`)."""
    return str(uuid.uuid4())


def iso_event_time(when: datetime) -> str:
    """Event `created_at`: millisecond precision with `Z`, as in Resend's samples."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def iso_email_time(when: datetime) -> str:
    """`data.created_at`: microseconds and `+00:00`, as in Resend's samples."""
    return when.astimezone(UTC).isoformat(timespec="microseconds")


def bounce(bounce_type: str = "Permanent", sub_type: str = "General",
           message: str = "The recipient's email address does not exist.") -> dict[str, str]:
    """`data.bounce` of email.bounced (Resend's sample: type Permanent, subType Suppressed)."""
    return {"message": message, "subType": sub_type, "type": bounce_type}


def email_event(event_type: EventType, email_id: str, *, to: Sequence[str] = ("client@example.com",),
                sender: str = SENDER, subject: str = "Your invoice is due", event_time: datetime | None = None,
                email_created: datetime | None = None, tags: Mapping[str, str] | None = None,
                broadcast_id: str | None = None, template_id: str | None = None,
                bounce_info: Mapping[str, str] | None = None, failed_reason: str | None = None,
                extra: Mapping[str, object] | None = None) -> dict[str, object]:
    """An email.* event body. `tags` come back as an object: our sender tags every message with
    `notification_id` and `kind`, so pass `{"notification_id": ..., "kind": ...}` to look like ours.
    `extra` merges more `data` fields (e.g. `{"click": {...}}` for email.clicked)."""
    now = datetime.now(tz=UTC)
    event_at = event_time or now
    data: dict[str, object] = {}
    if broadcast_id is not None:
        data["broadcast_id"] = broadcast_id
    data.update({
        "created_at": iso_email_time(email_created or event_at), "email_id": email_id, "from": sender,
        "to": list(to), "subject": subject,
    })
    if template_id is not None:
        data["template_id"] = template_id
    if event_type == "email.bounced" or bounce_info is not None:
        data["bounce"] = dict(bounce_info) if bounce_info is not None else bounce()
    if event_type == "email.failed" or failed_reason is not None:
        data["failed"] = {"reason": failed_reason or "reached_daily_quota"}
    if tags is not None:
        data["tags"] = dict(tags)
    if extra:
        data.update(extra)
    return {"type": event_type, "created_at": iso_event_time(event_at), "data": data}


def encode(body: Mapping[str, object]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def sign(secret: str, msg_id: str, timestamp: int, raw: bytes) -> str:
    """`v1,` + base64(HMAC-SHA256(key, f"{msg_id}.{timestamp}.{raw body}"))."""
    digest = hmac.new(secret_key(secret), f"{msg_id}.{timestamp}.".encode() + raw, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(raw: bytes, secret: str, *, msg_id: str | None = None, timestamp: int | None = None,
                   also_signed_with: Sequence[str] = (), prefix: HeaderPrefix = "svix") -> dict[str, str]:
    """The three signature headers (`svix-*` as Resend sends them; `webhook-*` for the Standard
    Webhooks spelling). `also_signed_with` adds signatures by more secrets, as during a rotation."""
    msg_id = msg_id or new_message_id()
    timestamp = int(time.time()) if timestamp is None else timestamp
    signatures = " ".join(sign(s, msg_id, timestamp, raw) for s in (secret, *also_signed_with))
    return {
        "Content-Type": "application/json", f"{prefix}-id": msg_id, f"{prefix}-timestamp": str(timestamp),
        f"{prefix}-signature": signatures,
    }


def post_request(url: str, body: Mapping[str, object] | bytes, secret: str, *, msg_id: str | None = None,
                 timestamp: int | None = None, prefix: HeaderPrefix = "svix") -> httpx.Request:
    """A signed POST, ready for `client.send(...)`. Reuse `msg_id` to model a Svix retry of one message."""
    raw = body if isinstance(body, bytes) else encode(body)
    headers = signed_headers(raw, secret, msg_id=msg_id, timestamp=timestamp, prefix=prefix)
    return httpx.Request("POST", url, content=raw, headers=headers)
