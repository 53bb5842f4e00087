"""Standard Webhooks verification (https://www.standardwebhooks.com), for our own producers (the R2 relay).

A message is signed as `v1,` + base64(HMAC-SHA256(secret, f"{webhook-id}.{webhook-timestamp}.{body}"))
in the `webhook-signature` header, a space-separated list (a producer rotating secrets signs with each).
Secrets are `whsec_` + base64 of the key bytes. A list of secrets is accepted so that, during a
rotation, messages signed with the old secret still verify. The timestamp (unix seconds) must be
within the tolerance of now in either direction, as the reference library requires.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


class WebhookVerificationError(Exception):
    """The message is not authentically ours, or is too old or too new; the reason is safe to return."""


@dataclass(frozen=True)
class SignedMessage:
    webhook_id: str
    timestamp: int


def decode_secret(secret: str) -> bytes:
    """`whsec_<base64>` (or bare base64) → the HMAC key; a malformed or empty secret is a config error."""
    raw = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a Standard Webhooks secret must be whsec_ followed by base64") from exc
    if not key:
        raise ValueError("a Standard Webhooks secret must not be empty")
    return key


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    body: bytes, headers: Mapping[str, str], keys: Sequence[bytes], now: float, tolerance_s: int
) -> SignedMessage:
    """Check the three headers against every key; raise `WebhookVerificationError` saying why it fails."""
    webhook_id = headers.get("webhook-id", "")
    raw_timestamp = headers.get("webhook-timestamp", "")
    signatures = headers.get("webhook-signature", "")
    if not (webhook_id and raw_timestamp and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature header")
    if not keys:
        raise WebhookVerificationError("no webhook secret is configured")
    try:
        timestamp = int(raw_timestamp)
    except ValueError as exc:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from exc
    if timestamp < now - tolerance_s:
        raise WebhookVerificationError("message timestamp too old")
    if timestamp > now + tolerance_s:
        raise WebhookVerificationError("message timestamp too new")
    offered = [entry.partition(",")[2] for entry in signatures.split(" ") if entry.startswith("v1,")]
    for key in keys:
        expected = sign(key, webhook_id, timestamp, body).partition(",")[2]
        if any(hmac.compare_digest(expected.encode(), candidate.encode()) for candidate in offered):
            return SignedMessage(webhook_id, timestamp)
    raise WebhookVerificationError("no matching signature found")
