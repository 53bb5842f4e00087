"""What every HTTP sender shares: reading `Retry-After`, classifying transport errors, lenient JSON."""

from __future__ import annotations

import httpx

from providers.port import Channel, SendRetryable


def retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (the delta-seconds form; an HTTP-date is ignored), else None."""
    value = response.headers.get("retry-after", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def transport_error(channel: Channel, exc: httpx.HTTPError) -> SendRetryable:
    """Network trouble: connect refused, timeouts, a dropped connection. Retry (see the notification
    handler's notes on the ambiguity of a read timeout for providers without idempotency keys)."""
    return SendRetryable(f"{channel}_transport: {type(exc).__name__}")


def json_body(response: httpx.Response) -> dict[str, object]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
