"""`GET|POST /webhooks/whatsapp`: the WhatsApp Cloud API webhook (message statuses).

GET is Meta's subscription handshake: `hub.mode=subscribe&hub.verify_token=<ours>&hub.challenge=<n>`
is answered 200 with the challenge as plain text when the token is `SV_WHATSAPP_VERIFY_TOKEN`
(constant-time), else 403 (503 when no token is configured).

POST is verified before parsing: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`
keyed with the App Secret, any of `SV_WHATSAPP_APP_SECRETS` (rotation). Missing or wrong: 401, nothing
written. Every `entry[].changes[]` with `field: messages` is read; each `value.statuses[]` item becomes
one `notification.status_reported` (sent, delivered, read, failed with `errors[0]`; `pricing` says
whether Meta charges it), deduped on (wamid, status, timestamp, error codes). Inbound messages,
system errors (`value.errors`) and other fields are acknowledged and counted as ignored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from events.notifications import DeliveryStatus, NotificationStatusReported, status_dedupe_key
from ingress.pipeline import IngressContext, IngressError, SignatureRefused, endpoint
from ingress.signatures import SignatureError, verify_hub_signature
from ingress.statuses import Reported, configured, matches_any, notification_id_or_none, obj, publish_statuses

log = structlog.get_logger("studiovault.ingress")
SIGNATURE_HEADER = "x-hub-signature-256"
STATUSES: dict[str, DeliveryStatus] = {"sent": "sent", "delivered": "delivered", "read": "read", "failed": "failed"}


async def handshake(request: Request, body: bytes, received_at: datetime, ctx: IngressContext) -> Response:
    del body, received_at
    token = ctx.config.whatsapp_verify_token
    if token is None:
        raise IngressError(503, "not_configured", "no WhatsApp verify token is configured")
    params = request.query_params
    offered = params.get("hub.verify_token", "")
    if params.get("hub.mode") != "subscribe" or not matches_any(offered, [token.get_secret_value()]):
        raise IngressError(403, "verification_failed", "hub.mode must be subscribe and hub.verify_token ours")
    log.info("whatsapp_webhook_verified")
    return PlainTextResponse(params.get("hub.challenge", ""))


async def accept(request: Request, body: bytes, received_at: datetime, ctx: IngressContext) -> Response:
    try:
        verify_hub_signature(body, request.headers.get(SIGNATURE_HEADER),
                             configured(ctx.config.whatsapp_app_secrets, "WhatsApp app secret"))
    except SignatureError as exc:
        raise SignatureRefused(401, exc.code, str(exc)) from exc
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise IngressError(400, "invalid_json", f"the body is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("object") != "whatsapp_business_account":
        raise IngressError(422, "not_a_whatsapp_webhook", "expected object: whatsapp_business_account")
    items: list[Reported] = []
    ignored = 0
    for change in _changes(doc):
        value = obj(change.get("value"))
        if change.get("field") != "messages":
            ignored += 1
            continue
        statuses = value.get("statuses") or []
        if not isinstance(statuses, list):
            raise IngressError(422, "invalid_field", "value.statuses must be a list", field="value.statuses")
        items += [_reported(s, n) for n, s in enumerate(statuses)]
        for key in ("messages", "errors"):  # inbound messages, system errors: not statuses of our sends
            if value.get(key):
                ignored += 1
                log.info("whatsapp_webhook_not_a_status", kind=key, count=len(value.get(key) or []))
    return await publish_statuses(ctx, "whatsapp", items, received_at, ignored)


def _changes(doc: dict[str, Any]) -> list[dict[str, Any]]:
    entries = doc.get("entry")
    if not isinstance(entries, list):
        raise IngressError(422, "missing_field", "required field entry is missing", field="entry")
    return [c for e in entries if isinstance(e, dict) for c in (e.get("changes") or []) if isinstance(c, dict)]


def _reported(item: object, n: int) -> Reported:
    if not isinstance(item, dict):
        raise IngressError(422, "invalid_field", f"statuses[{n}] must be an object", field=f"statuses[{n}]")
    wamid, state, stamp = (_text(item, name, n) for name in ("id", "status", "timestamp"))
    if not stamp.isdigit():
        raise IngressError(422, "invalid_field", f"statuses[{n}].timestamp must be unix seconds",
                           field=f"statuses[{n}].timestamp")
    raw_errors = item.get("errors")
    errors: list[Any] = raw_errors if isinstance(raw_errors, list) else []
    first = obj(errors[0]) if errors else {}
    pricing = obj(item.get("pricing"))
    event = NotificationStatusReported(
        provider="whatsapp", channel="whatsapp", provider_message_id=wamid, status=STATUSES.get(state, "info"),
        provider_status=state[:64], occurred_at=datetime.fromtimestamp(int(stamp), UTC),
        notification_id=notification_id_or_none(item.get("biz_opaque_callback_data")),
        error_code=str(first["code"])[:64] if "code" in first else None,
        error_title=str(first.get("title") or first.get("message") or "")[:500] or None,
        billable=_billable(pricing), pricing_category=str(pricing["category"])[:64] if "category" in pricing else None,
    )
    codes = ",".join(str(e.get("code")) for e in errors if isinstance(e, dict))
    return Reported(event, status_dedupe_key("whatsapp", wamid, state, stamp, codes))


def _text(item: dict[str, Any], name: str, n: int) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value:
        raise IngressError(422, "missing_field", f"statuses[{n}].{name} is missing", field=f"statuses[{n}].{name}")
    return value


def _billable(pricing: dict[str, Any]) -> bool | None:
    """Whether Meta charges the message: `type` regular (free_customer_service / free_entry_point are not);
    the older `billable` flag when there is no type (Meta is deprecating it); None when not said."""
    if isinstance(pricing.get("type"), str):
        return bool(pricing["type"] == "regular")
    if isinstance(pricing.get("billable"), bool):
        return bool(pricing["billable"])
    return None


routes = [
    Route("/webhooks/whatsapp", endpoint("whatsapp", handshake), methods=["GET"]),
    Route("/webhooks/whatsapp", endpoint("whatsapp", accept), methods=["POST"]),
]
