"""What every HTTP sender shares: reading `Retry-After`, classifying transport errors, lenient JSON."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from core.parse import retry_after_seconds
from providers.port import Channel, SendRetryable


def retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (the delta-seconds form; an HTTP-date is ignored), else None."""
    return retry_after_seconds(response.headers.get("retry-after"))


class HttpSender:
    """What the HTTP senders share: one shared client, their endpoint, a per-request time limit."""

    channel: Channel

    def __init__(self, http: httpx.AsyncClient, url: str, timeout_s: float) -> None:
        self.http = http
        self.url = url
        self.timeout = httpx.Timeout(timeout_s)

    async def post(self, body: Mapping[str, object], headers: Mapping[str, str]) -> httpx.Response:
        """ONE request; network trouble becomes `SendRetryable`, any answer is returned for classifying."""
        try:
            return await self.http.post(self.url, json=body, timeout=self.timeout, headers=dict(headers))
        except httpx.HTTPError as exc:
            raise transport_error(self.channel, exc) from exc


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
