"""WhatsApp Cloud API template messages: `POST /{version}/{phone-number-id}/messages`.

The recipient goes as E.164 with its '+' (`+919876543210`): Meta's send guide recommends the plus and
the country calling code, because without the '+' it prepends the business number's own country code
(an Indian business sending `919876543210` would reach `+91919876543210`). The Cloud API takes no
idempotency key: our notification id travels as `biz_opaque_callback_data`
(echoed in status webhooks) so a duplicate can at least be recognised. Errors are classified on the
Graph `error.code`, not the HTTP status (Meta's advice): throughput and pair rate limits and
"service unavailable" codes retry; everything else (undeliverable, template missing or paused,
bad parameters, token or permission problems) is permanent for this message.
"""

from __future__ import annotations

import httpx

from providers.http import HttpSender, json_body, retry_after
from providers.port import Channel, OutboundMessage, SendRejected, SendResult, SendRetryable

# code -> minimum seconds before a retry (used when no Retry-After header came with it).
RETRY_CODES: dict[int, float] = {
    130429: 1.0,  # Cloud API throughput reached
    131056: 6.0,  # (business, consumer) pair rate limit: about one message per 6 s to one number
    4: 60.0,  # app-level Graph rate limit
    80007: 60.0,  # WABA rate limit
    131048: 900.0,  # spam rate limit (quality): much later
    1: 5.0,  # unknown / temporary
    2: 5.0,  # service temporarily unavailable
    131000: 5.0,  # something went wrong
    131016: 5.0,  # service unavailable
}


class WhatsAppSender(HttpSender):
    channel: Channel = "whatsapp"

    def __init__(self, http: httpx.AsyncClient, base_url: str, version: str, phone_number_id: str, token: str,
                 *, language: str = "en", timeout_s: float = 8.0) -> None:
        super().__init__(http, f"{base_url.rstrip('/')}/{version}/{phone_number_id}/messages", timeout_s)
        self.token = token
        self.language = language

    def body(self, message: OutboundMessage) -> dict[str, object]:
        template: dict[str, object] = {"name": message.kind, "language": {"code": self.language}}
        if message.params:
            template["components"] = [
                {"type": "body", "parameters": [{"type": "text", "text": p} for p in message.params]}
            ]
        return {
            "messaging_product": "whatsapp", "recipient_type": "individual", "to": message.to,
            "type": "template", "template": template, "biz_opaque_callback_data": message.reference,
        }

    async def send(self, message: OutboundMessage) -> SendResult:
        return classify(await self.post(self.body(message), {"Authorization": f"Bearer {self.token}"}))


def classify(response: httpx.Response) -> SendResult:
    body = json_body(response)
    if response.status_code == 200:
        messages = body.get("messages")
        if isinstance(messages, list) and messages and isinstance(messages[0], dict):
            return SendResult(str(messages[0].get("id") or "") or None)
        return SendResult(None, "accepted_without_message_id")
    error = body.get("error")
    code = int(error.get("code", -1)) if isinstance(error, dict) and str(error.get("code", "")).isdigit() else -1
    status = response.status_code
    wait = retry_after(response)
    if code in RETRY_CODES:
        raise SendRetryable(f"whatsapp_{code}", max(wait or 0.0, RETRY_CODES[code]), status, str(code))
    if status == 429 or status >= 500:  # a throttle or an outage whatever the code says
        raise SendRetryable(f"whatsapp_http_{status}", wait, status, str(code))
    raise SendRejected(f"whatsapp_{code if code != -1 else f'http_{status}'}", status, str(code))
