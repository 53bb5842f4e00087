"""Indian DLT SMS through an MSG91-style flow: `POST /api/v5/flow` with `authkey`.

Each notification kind maps to a MSG91 template (flow) id, itself tied to the DLT-registered template;
the body parameters go in as `VAR1..VARn`. No idempotency key exists: MSG91 only discards an identical
request within 10 s (code 311), which we read as "the earlier request was accepted". The answer's
`type` decides, not only the HTTP status (errors can come with 200).
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from providers.http import HttpSender, json_body, retry_after
from providers.port import Channel, OutboundMessage, SendRejected, SendResult, SendRetryable

DUPLICATE_DISCARDED = "311"  # "same request was generated twice within 10 seconds": the first was accepted
RETRY_CODES = {"306"}  # route unavailable in this time window


class Msg91Sender(HttpSender):
    channel: Channel = "sms"

    def __init__(self, http: httpx.AsyncClient, base_url: str, authkey: str, template_ids: Mapping[str, str],
                 timeout_s: float = 8.0) -> None:
        super().__init__(http, f"{base_url.rstrip('/')}/api/v5/flow", timeout_s)
        self.authkey = authkey
        self.template_ids = dict(template_ids)

    def body(self, message: OutboundMessage) -> dict[str, object]:
        template_id = self.template_ids.get(message.kind)
        if not template_id:
            raise SendRejected(f"sms_template_missing: no DLT template id for {message.kind!r}")
        # MSG91 takes the country code and number as digits ("919876543210"), no '+'.
        recipient: dict[str, str] = {"mobiles": message.to.removeprefix("+")}
        recipient.update({f"VAR{i}": value for i, value in enumerate(message.params, start=1)})
        return {"template_id": template_id, "short_url": "0", "realTimeResponse": "1", "recipients": [recipient]}

    async def send(self, message: OutboundMessage) -> SendResult:
        return classify(await self.post(self.body(message), {"authkey": self.authkey, "accept": "application/json"}))


def classify(response: httpx.Response) -> SendResult:
    status = response.status_code
    body = json_body(response)
    kind = str(body.get("type", "")).lower()
    code = str(body.get("code", "")).strip()
    if status == 429 or status >= 500:
        raise SendRetryable(f"sms_http_{status}", retry_after(response), status, code)
    if status < 300 and kind == "success":
        return SendResult(str(body.get("message") or "") or None)
    if code == DUPLICATE_DISCARDED:
        return SendResult(None, "duplicate_of_accepted_request")
    if code in RETRY_CODES:
        raise SendRetryable(f"sms_{code}", retry_after(response) or 60.0, status, code)
    # 401 bad authkey, 418 IP not whitelisted, invalid mobile, template mismatch, balance: permanent.
    reason = str(body.get("message", ""))[:200]
    raise SendRejected(f"sms_{code or f'http_{status}'}: {reason}".rstrip(": "), status, code)
