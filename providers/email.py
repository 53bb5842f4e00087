"""E-mail through a Resend-shaped HTTP API: `POST /emails`, Bearer key, `Idempotency-Key`.

The key is derived from the notification id, so a re-send after a crash (same key, same body) is
answered with the original response and sends nothing twice. Two 409s mean different things:
`concurrent_idempotent_requests` (the first request is still in flight) retries with the same key;
`invalid_idempotent_request` (the key was used with another body) means this logical send already
happened under that key: treated as sent, never answered by minting a new key.
"""

from __future__ import annotations

import httpx

from providers.http import HttpSender, json_body, retry_after
from providers.port import Channel, OutboundMessage, SendRejected, SendResult, SendRetryable

QUOTA_ERRORS = {"daily_quota_exceeded", "monthly_quota_exceeded"}


class EmailSender(HttpSender):
    channel: Channel = "email"

    def __init__(self, http: httpx.AsyncClient, base_url: str, api_key: str, sender: str,
                 timeout_s: float = 8.0) -> None:
        super().__init__(http, f"{base_url.rstrip('/')}/emails", timeout_s)
        self.api_key = api_key
        self.sender = sender

    def body(self, message: OutboundMessage) -> dict[str, object]:
        return {
            "from": self.sender, "to": [message.to], "subject": message.subject, "text": message.text,
            "html": message.html,
            "tags": [{"name": "notification_id", "value": message.reference}, {"name": "kind", "value": message.kind}],
        }

    async def send(self, message: OutboundMessage) -> SendResult:
        headers = {"Authorization": f"Bearer {self.api_key}", "Idempotency-Key": message.idempotency_key}
        return classify(await self.post(self.body(message), headers))


def classify(response: httpx.Response) -> SendResult:
    status = response.status_code
    body = json_body(response)
    name = str(body.get("name", ""))
    if 200 <= status < 300:
        return SendResult(str(body.get("id") or "") or None)
    if status == 409 and name == "invalid_idempotent_request":
        return SendResult(None, "idempotency_key_already_used")
    if status == 409 or (status == 429 and name not in QUOTA_ERRORS) or status >= 500:
        raise SendRetryable(f"email_{name or f'http_{status}'}", retry_after(response), status, name)
    if status == 429:  # a daily or monthly quota: not before the provider says, at least an hour
        raise SendRetryable(f"email_{name}", max(retry_after(response) or 0.0, 3600.0), status, name)
    raise SendRejected(f"email_{name or f'http_{status}'}: {str(body.get('message', ''))[:200]}".rstrip(": "),
                       status, name)
