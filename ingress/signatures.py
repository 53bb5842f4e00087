"""Webhook signature checks over the raw body, before anything is parsed.

Each gateway is given a LIST of secrets: during a rotation, retries signed with the old secret still
arrive. Every comparison is constant-time (`hmac.compare_digest`).

- Razorpay: `X-Razorpay-Signature` = hex HMAC-SHA256(raw body, webhook secret). No timestamp.
- Meta (WhatsApp): `X-Hub-Signature-256: sha256=<hex>` = HMAC-SHA256(raw body, app secret). No timestamp.
- Stripe: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]`, HMAC-SHA256 of `"{t}.{raw body}"` keyed with
  the endpoint secret as UTF-8; any v1 may match. Stripe's SDK rejects only timestamps older than the
  tolerance; we also reject ones further than the tolerance in the future (a replay window is a window).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence


class SignatureError(Exception):
    """The signature is missing, malformed, wrong, or (Stripe) outside the time tolerance."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


def _hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _any_matches(candidates: Sequence[str], expected: Sequence[str]) -> bool:
    matched = False
    for want in expected:
        for got in candidates:
            # Evaluate every pair: no early exit that would time which secret matched.
            matched |= hmac.compare_digest(want.encode(), got.strip().lower().encode())
    return matched


def verify_razorpay(body: bytes, signature: str | None, secrets: Sequence[str]) -> None:
    if not signature:
        raise SignatureError("missing_signature", "X-Razorpay-Signature header is missing")
    if not _any_matches([signature], [_hmac_hex(s, body) for s in secrets]):
        raise SignatureError("invalid_signature", "X-Razorpay-Signature does not match the body")


def verify_hub_signature(body: bytes, header: str | None, secrets: Sequence[str]) -> None:
    """Meta (WhatsApp Cloud API): `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(raw body, app secret)>`."""
    if not header:
        raise SignatureError("missing_signature", "X-Hub-Signature-256 header is missing")
    scheme, _, digest = header.strip().partition("=")
    if scheme.lower() != "sha256" or not digest:
        raise SignatureError("malformed_signature", "X-Hub-Signature-256 must be sha256=<hex>")
    if not _any_matches([digest], [_hmac_hex(s, body) for s in secrets]):
        raise SignatureError("invalid_signature", "X-Hub-Signature-256 does not match the body")


def parse_stripe_header(header: str) -> tuple[int, list[str]]:
    """`t=...,v1=...` → (timestamp, v1 signatures); other schemes (v0) are ignored."""
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None:
        raise SignatureError("malformed_signature", "Stripe-Signature has no timestamp (t=...)")
    if not signatures:
        raise SignatureError("malformed_signature", "Stripe-Signature has no v1 signature")
    return timestamp, signatures


def verify_stripe(body: bytes, header: str | None, secrets: Sequence[str], tolerance_s: int, now_s: float) -> int:
    """Check the signature, then the age; returns the signed timestamp."""
    if not header:
        raise SignatureError("missing_signature", "Stripe-Signature header is missing")
    timestamp, signatures = parse_stripe_header(header)
    signed = str(timestamp).encode() + b"." + body
    if not _any_matches(signatures, [_hmac_hex(s, signed) for s in secrets]):
        raise SignatureError("invalid_signature", "no Stripe-Signature v1 matches the body")
    if tolerance_s > 0 and abs(now_s - timestamp) > tolerance_s:
        raise SignatureError("stale_timestamp",
                             f"Stripe-Signature timestamp is {int(now_s - timestamp)} s from now; "
                             f"tolerance is {tolerance_s} s")
    return timestamp
