"""MSG91 SMS delivery reports (DLR), in the shapes MSG91 documents. MSG91 does not sign them.

Sources (see /work/notes/notify.md):

- "How to use Webhook to get the delivery report" (MSG91 help):
  https://msg91.com/help/how-can-i-get-the-delivery-reports-on-my-webhook-url
  The SMS "Webhook" setting has three versions:
  * v2 (default): `Content-Type: application/x-www-form-urlencoded`, ONE field `data` whose value is a
    JSON-encoded list: `[{"senderId", "requestId", "report": [{"date", "amount", "clientid", "INMSID",
    "CRQID", "ctCode", "number", "credit", "status", "desc", "failedReason"}], "userId",
    "campaignName"}]`. Every value is a string.
  * v3: `application/json`, one flat object per number: `{"date", "number", "senderId", "amount",
    "requestId", "INMSID", "CRQID", "credit", "userId", "campaignName", "status", "desc"}`.
  * v4 (for CleverTap): `[{"data": [{"meta", "INMSID", "description", "ts"}], "event": "delivered"}]`
    has no request id: not useful to us, not modelled.
  Status codes: 1 Delivered, 2 Failed, 9 NDNC (promotional only), 16 and 25 Rejected, 17 Blocked number.
- "Webhook (New)": https://msg91.com/help/webhook-new/how-to-receive-sms-delivery-reports-via-webhook-new
  JSON only, one call per recipient number, fields chosen by the account from `{{requestId}}`,
  `{{requestedAt}}`, `{{status}}`, `{{deliveryTime}}`, `{{telNum}}`, `{{credit}}`, `{{senderId}}`,
  `{{campaignName}}`, `{{failureReason}}`, ... The rendering of `{{status}}` is not shown there:
  `webhook_new_body` assumes the same numeric codes (UNVERIFIED; check against a real delivery).
- The `requestId` is the id the flow API returned on success: `POST /api/v5/flow` answers
  `{"type": "success", "message": "<request id>"}` (our providers/sms.py reads it as the message id).
- No signature header exists in any version: a receiver authenticates by an unguessable token we put
  in the webhook URL (`url_with_token`), optionally plus an IP allowlist.
- `date` is "YYYY-MM-DD HH:MM:SS" without a zone; for an Indian account that is IST (assumption).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Literal
from urllib.parse import quote, urlencode

import httpx

DELIVERED = "1"
FAILED = "2"
NDNC = "9"  # number on the National Do Not Call registry (promotional route only)
REJECTED = "16"
BLOCKED = "17"
REJECTED_ALT = "25"  # documented as "Rejected" too

DESCRIPTIONS: dict[str, str] = {
    DELIVERED: "DELIVERED", FAILED: "FAILED", NDNC: "NDNC", REJECTED: "REJECTED", BLOCKED: "BLOCKED",
    REJECTED_ALT: "REJECTED",
}
FINAL_FAILURES = frozenset({FAILED, NDNC, REJECTED, BLOCKED, REJECTED_ALT})

IST = timezone(timedelta(hours=5, minutes=30))
SENDER_ID = "STDVLT"
USER_ID = "270001"
CAMPAIGN = "API"


def new_request_id() -> str:
    """A request id like the flow API returns (24 hex-ish characters, e.g. 3365646f...)."""
    return secrets.token_hex(12)


def msg91_time(when: datetime | str) -> str:
    """MSG91's "YYYY-MM-DD HH:MM:SS" (IST wall clock for an aware datetime)."""
    if isinstance(when, str):
        return when
    return (when.astimezone(IST) if when.tzinfo is not None else when).strftime("%Y-%m-%d %H:%M:%S")


def report(number: str, status: str, when: datetime | str, *, desc: str | None = None, failed_reason: str = "",
           credit: str = "1", amount: str = "0.20", client_id: str = "") -> dict[str, str]:
    """One entry of a v2 `report[]` (one per recipient number of the request)."""
    return {
        "date": msg91_time(when), "amount": amount, "clientid": client_id, "INMSID": "0", "CRQID": "0",
        "ctCode": "900", "number": number, "credit": credit, "status": status,
        "desc": desc if desc is not None else DESCRIPTIONS.get(status, "UNKNOWN"), "failedReason": failed_reason,
    }


def v2_payload(request_id: str, reports: Sequence[Mapping[str, str]], *, sender_id: str = SENDER_ID,
               user_id: str = USER_ID, campaign_name: str = CAMPAIGN) -> list[dict[str, object]]:
    """The decoded value of the v2 `data` field."""
    return [{"senderId": sender_id, "requestId": request_id, "report": [dict(r) for r in reports],
             "userId": user_id, "campaignName": campaign_name}]


def v2_form(request_id: str, reports: Sequence[Mapping[str, str]], **kwargs: str) -> bytes:
    """The v2 body as posted: `data=<url-encoded JSON list>` (form-encoded, not JSON)."""
    payload = v2_payload(request_id, reports, **kwargs)
    return urlencode({"data": json.dumps(payload, separators=(",", ":"))}).encode()


def v3_body(request_id: str, number: str, status: str, when: datetime | str, *, desc: str | None = None,
            sender_id: str = SENDER_ID, user_id: str = USER_ID, campaign_name: str = CAMPAIGN,
            credit: str = "1", amount: str = "0.20") -> dict[str, str]:
    """The v3 JSON body: one flat object for one number."""
    return {
        "date": msg91_time(when), "number": number, "senderId": sender_id, "amount": amount,
        "requestId": request_id, "INMSID": "0", "CRQID": "0", "credit": credit, "userId": user_id,
        "campaignName": campaign_name, "status": status,
        "desc": desc if desc is not None else DESCRIPTIONS.get(status, "UNKNOWN"),
    }


def webhook_new_body(request_id: str, tel_num: str, status: str, requested_at: datetime | str,
                     delivery_time: datetime | str, *, failure_reason: str = "", credit: str = "1",
                     sender_id: str = SENDER_ID, campaign_name: str = CAMPAIGN) -> dict[str, str]:
    """A "Webhook (New)" "On Report Received" body with the documented field names (template we would
    configure). The format of `status` here is an assumption (numeric code as in v2/v3)."""
    return {
        "requestId": request_id, "requestedAt": msg91_time(requested_at), "status": status,
        "deliveryTime": msg91_time(delivery_time), "telNum": tel_num, "credit": credit, "senderId": sender_id,
        "campaignName": campaign_name, "failureReason": failure_reason,
    }


def url_with_token(url: str, token: str, where: Literal["path", "query"] = "path") -> str:
    """Where the shared secret goes, since MSG91 cannot sign: `<url>/<token>` or `<url>?token=<token>`."""
    if where == "path":
        return f"{url.rstrip('/')}/{quote(token, safe='')}"
    return f"{url}{'&' if '?' in url else '?'}{urlencode({'token': token})}"


def v2_request(url: str, request_id: str, reports: Sequence[Mapping[str, str]], **kwargs: str) -> httpx.Request:
    return httpx.Request("POST", url, content=v2_form(request_id, reports, **kwargs),
                         headers={"Content-Type": "application/x-www-form-urlencoded"})


def json_request(url: str, body: Mapping[str, str]) -> httpx.Request:
    """v3 and Webhook (New) deliveries: a JSON POST."""
    raw = json.dumps(body, separators=(",", ":")).encode()
    return httpx.Request("POST", url, content=raw, headers={"Content-Type": "application/json"})
