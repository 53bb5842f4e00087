"""WhatsApp Cloud API status webhooks, as Meta posts them, signed with the app secret.

Shapes (see /work/notes/notify.md for the full research):

- Status webhook reference, Meta:
  https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/status/
  `object: whatsapp_business_account`, `entry[].changes[].value` with `messaging_product`,
  `metadata {display_phone_number, phone_number_id}` and `statuses[]`; `field: "messages"`.
  Each status: `id` (the wamid the send API returned), `status` (sent|delivered|read|failed),
  `timestamp` (unix seconds AS A STRING), `recipient_id`, optional `biz_opaque_callback_data` (echoed
  from the send request), `pricing`, `conversation` (v23 and lower; v24+ omits it outside free
  entry points), and `errors[]` on failed.
- Errors object, Meta errors webhook reference:
  https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages/errors
  `{code, title, message (same text as title), error_data: {details}, href}`.
- Pricing under per-message pricing (PMP, from 2025-07-01): `{billable, pricing_model: "PMP",
  type: regular|free_customer_service|free_entry_point, category}`; Meta says `billable` will be
  deprecated in favour of `type` + `category` (Meta's pricing page, as mirrored at
https://arrahmah.netlify.app/host-https-developers.facebook.com/documentation/business-messaging/whatsapp/groups/pricing/
  ; BSP sample with the same fields: https://partner-docs.gupshup.io/docs/pmp-events).
- Signature: `X-Hub-Signature-256: sha256=<lowercase hex HMAC-SHA256(app secret, raw body)>`
  (https://hexdocs.pm/whatsapp_sdk/WhatsApp.Webhook.html,
  https://whatsapp.github.io/WhatsApp-Nodejs-SDK/api-reference/webhooks/start). `encode` writes
  ASCII-only JSON (non-ASCII as \\uXXXX escapes, as Meta sends it), so the signed bytes are the body.
- Verification: `GET ?hub.mode=subscribe&hub.verify_token=<ours>&hub.challenge=<random>`; the
  endpoint answers 200 with the challenge as plain text, 403 otherwise (e.g.
  https://mintlify.com/Alvaro-SP/AmbioSys/api/whatsapp/webhook, hexdocs above).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal

import httpx

Status = Literal["sent", "delivered", "read", "failed"]
PricingCategory = Literal[
    "authentication", "authentication-international", "marketing", "marketing_lite", "utility", "service",
    "referral_conversion",
]
PricingType = Literal["regular", "free_customer_service", "free_entry_point"]

SIGNATURE_HEADER = "X-Hub-Signature-256"
USER_AGENT = "facebookexternalua"  # the agent Meta's webhook deliveries come with

# Defaults that look like Meta's own samples (test numbers, not real accounts).
WABA_ID = "102290129340398"
PHONE_NUMBER_ID = "106540352242922"
DISPLAY_PHONE_NUMBER = "15550783881"
ERRORS_HREF = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"

# code -> (title, details) for the failures a status webhook realistically carries. Titles and details
# paraphrase Meta's error-code page as quoted by BSPs (sources in /work/notes/notify.md).
ERRORS: dict[int, tuple[str, str]] = {
    131026: ("Message undeliverable", "Unable to deliver message. Reasons can include: the recipient phone number is "
             "not a WhatsApp phone number; the recipient has not accepted the new Terms of Service; the recipient "
             "is using an old WhatsApp version."),
    131047: ("Re-engagement message", "Message failed to send because more than 24 hours have passed since the "
             "customer last replied to this number."),
    131049: ("This message was not delivered to maintain healthy ecosystem engagement.",
             "In order to maintain a healthy ecosystem engagement, the message failed to be delivered."),
    131050: ("User has stopped receiving marketing messages", "Unable to deliver the message. This recipient has "
             "chosen to stop receiving marketing messages on WhatsApp from your business."),
    131051: ("Unsupported message type", "Message type is not currently supported."),
    130472: ("User's number is part of an experiment", "Failed to send message because this user's phone number "
             "is part of an experiment."),
    131000: ("Something went wrong", "Message failed to send due to an unknown error."),
    131042: ("Business eligibility payment issue", "Message failed to send because there were one or more errors "
             "related to your payment method."),
    131048: ("Spam rate limit hit", "Message failed to send because there are restrictions on how many messages "
             "can be sent from this phone number."),
    131053: ("Media upload error", "Unable to upload the media used in the message."),
    131056: ("(Business Account, Consumer Account) pair rate limit hit", "Message failed to send because there were "
             "too many messages sent from this phone number to the same phone number in a short period of time."),
    130429: ("Rate limit hit", "Message failed to send because there were too many messages sent from this phone "
             "number in a short period of time."),
    132001: ("Template does not exist", "The template does not exist in the specified language or the template "
             "has not been approved."),
    132015: ("Template is Paused", "Template is paused due to low quality so it cannot be sent in a template "
             "message."),
}


def new_wamid() -> str:
    """A fresh message id in Meta's `wamid.<base64>` form (the real ones encode a protobuf)."""
    return "wamid." + base64.b64encode(b"\x15\x02\x00\x11\x18\x12" + secrets.token_bytes(24)).decode()


def unix(when: int | datetime) -> int:
    return when if isinstance(when, int) else int(when.timestamp())


def error(code: int, *, title: str | None = None, details: str | None = None,
          href: str = ERRORS_HREF) -> dict[str, object]:
    """One entry of `statuses[].errors[]`: Meta repeats the title as `message`."""
    known_title, known_details = ERRORS.get(code, ("Unknown error", "Unknown error."))
    text = title if title is not None else known_title
    return {
        "code": code, "title": text, "message": text,
        "error_data": {"details": details if details is not None else known_details}, "href": href,
    }


def pricing(category: PricingCategory = "utility", *, pricing_type: PricingType = "regular",
            billable: bool | None = None, pricing_model: str = "PMP") -> dict[str, object]:
    """`statuses[].pricing` under per-message pricing. `billable` defaults to "charged at the regular
    rate" (type regular); free_customer_service / free_entry_point messages carry billable false."""
    return {
        "billable": (pricing_type == "regular") if billable is None else billable,
        "pricing_model": pricing_model, "type": pricing_type, "category": category,
    }


def conversation(conversation_id: str, origin_type: str = "utility",
                 expiration_timestamp: int | datetime | None = None) -> dict[str, object]:
    """`statuses[].conversation` (API v23 and lower; `expiration_timestamp` only on the first `sent`)."""
    body: dict[str, object] = {"id": conversation_id}
    if expiration_timestamp is not None:
        body["expiration_timestamp"] = str(unix(expiration_timestamp))
    body["origin"] = {"type": origin_type}
    return body


def status(wamid: str, state: Status, timestamp: int | datetime, *, recipient_id: str = "919876543210",
           biz_opaque_callback_data: str | None = None,
           pricing_info: Mapping[str, object] | Literal["default"] | None = "default",
           conversation_info: Mapping[str, object] | None = None,
           errors: Sequence[Mapping[str, object]] | None = None) -> dict[str, object]:
    """One `statuses[]` object.

    `pricing_info="default"` puts a regular utility pricing object on sent/delivered/read and none on
    failed (Meta attaches pricing to the statuses of a message it may charge; a failed one is not
    charged). Pass `None` to omit it, or your own `pricing(...)`. `errors` defaults to a 131026 on a
    failed status, since Meta always says why.
    """
    body: dict[str, object] = {"id": wamid, "status": state, "timestamp": str(unix(timestamp)),
                               "recipient_id": recipient_id}
    if conversation_info is not None:
        body["conversation"] = dict(conversation_info)
    chosen = (pricing() if state != "failed" else None) if pricing_info == "default" else pricing_info
    if chosen is not None:
        body["pricing"] = dict(chosen)
    if biz_opaque_callback_data is not None:
        body["biz_opaque_callback_data"] = biz_opaque_callback_data
    if errors is None and state == "failed":
        errors = [error(131026)]
    if errors:
        body["errors"] = [dict(e) for e in errors]
    return body


def statuses_body(statuses: Sequence[Mapping[str, object]], *, phone_number_id: str = PHONE_NUMBER_ID,
                  display_phone_number: str = DISPLAY_PHONE_NUMBER, waba_id: str = WABA_ID) -> dict[str, object]:
    """The whole webhook body: one entry, one `messages` change carrying every status given (Meta may
    batch several statuses, even of different messages, into one POST)."""
    return {
        "object": "whatsapp_business_account",
        "entry": [{
            "id": waba_id,
            "changes": [{
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": {"display_phone_number": display_phone_number, "phone_number_id": phone_number_id},
                    "statuses": [dict(s) for s in statuses],
                },
                "field": "messages",
            }],
        }],
    }


def status_body(wamid: str, state: Status, timestamp: int | datetime, *,
                phone_number_id: str = PHONE_NUMBER_ID, recipient_id: str = "919876543210",
                biz_opaque_callback_data: str | None = None,
                pricing_info: Mapping[str, object] | Literal["default"] | None = "default",
                errors: Sequence[Mapping[str, object]] | None = None) -> dict[str, object]:
    """Shortcut: a webhook body with a single status."""
    one = status(wamid, state, timestamp, recipient_id=recipient_id,
                 biz_opaque_callback_data=biz_opaque_callback_data, pricing_info=pricing_info, errors=errors)
    return statuses_body([one], phone_number_id=phone_number_id)


def encode(body: Mapping[str, object]) -> bytes:
    """Compact, ASCII-only JSON (non-ASCII escaped as Meta does): these exact bytes are signed and sent."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode()


def sign(raw: bytes, app_secret: str) -> str:
    """`sha256=` + lowercase hex HMAC-SHA256 of the raw body keyed with the app secret (UTF-8)."""
    return "sha256=" + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()


def signed_headers(raw: bytes, app_secret: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "User-Agent": USER_AGENT, SIGNATURE_HEADER: sign(raw, app_secret)}


def post_request(url: str, body: Mapping[str, object] | bytes, app_secret: str) -> httpx.Request:
    """A signed POST, ready for `client.send(...)` on a sync or async httpx client (or ASGITransport)."""
    raw = body if isinstance(body, bytes) else encode(body)
    return httpx.Request("POST", url, content=raw, headers=signed_headers(raw, app_secret))


def verification_params(verify_token: str, challenge: str | None = None,
                        mode: str = "subscribe") -> dict[str, str]:
    """The query Meta's subscription check sends; a correct endpoint answers 200 + `challenge` as text/plain."""
    return {"hub.mode": mode, "hub.verify_token": verify_token,
            "hub.challenge": challenge if challenge is not None else str(secrets.randbelow(10**10))}


def verification_request(url: str, verify_token: str, challenge: str | None = None,
                         mode: str = "subscribe") -> httpx.Request:
    return httpx.Request("GET", url, params=verification_params(verify_token, challenge, mode),
                         headers={"User-Agent": USER_AGENT})
