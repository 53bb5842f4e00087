"""`POST /webhooks/resend`: Resend e-mail events, signed by Svix (the Standard Webhooks scheme).

Verified before parsing over the raw body: headers `svix-id`, `svix-timestamp`, `svix-signature`
(`webhook-*` spellings too), HMAC-SHA256 of `"{id}.{timestamp}.{body}"` keyed with a `whsec_` secret,
any of `SV_RESEND_WEBHOOK_SECRETS` (rotation), timestamp within `SV_RESEND_TOLERANCE_S` (300 s) of now
either way. Missing, wrong or stale: 401, nothing written. Deduped on `svix-id` (the same on every Svix
retry of one message).

Mapping: email.sent → sent; email.delivered and email.complained (delivered, then marked spam) →
delivered; email.opened / email.clicked → read; email.bounced, email.failed, email.suppressed → failed
(bounce type / failed reason kept); email.delivery_delayed, email.scheduled → info. Other types
(inbound email.received, contact.*, domain.*) are not statuses of our sends: acknowledged, ignored.
`data.email_id` names the send; our `notification_id` tag is the fallback.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson
from pydantic import AwareDatetime, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from events.notifications import DeliveryStatus, NotificationStatusReported, status_dedupe_key
from ingress.pipeline import IngressContext, IngressError, SignatureRefused, endpoint
from ingress.standard_webhooks import WebhookVerificationError, decode_secret, verify
from ingress.statuses import Reported, configured, notification_id_or_none, obj, publish_statuses

TYPES: dict[str, DeliveryStatus] = {
    "email.sent": "sent", "email.delivered": "delivered", "email.complained": "delivered",
    "email.opened": "read", "email.clicked": "read", "email.bounced": "failed", "email.failed": "failed",
    "email.suppressed": "failed", "email.delivery_delayed": "info", "email.scheduled": "info",
}
_TIME = TypeAdapter(AwareDatetime)


@lru_cache(maxsize=8)
def _keys(secrets: tuple[str, ...]) -> tuple[bytes, ...]:
    return tuple(decode_secret(s) for s in secrets)


def _svix_headers(request: Request) -> dict[str, str]:
    """The three signature headers under their Standard Webhooks names (Resend sends `svix-*`)."""
    return {f"webhook-{name}": request.headers.get(f"svix-{name}") or request.headers.get(f"webhook-{name}", "")
            for name in ("id", "timestamp", "signature")}


async def accept(request: Request, body: bytes, received_at: datetime, ctx: IngressContext) -> Response:
    secrets = tuple(configured(ctx.config.resend_webhook_secrets, "Resend webhook secret"))
    headers = _svix_headers(request)
    try:
        signed = verify(body, headers, _keys(secrets), received_at.timestamp(), ctx.config.resend_tolerance_s)
    except WebhookVerificationError as exc:
        raise SignatureRefused(401, "bad_signature", str(exc)) from exc
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise IngressError(400, "invalid_json", f"the body is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("type"), str):
        raise IngressError(422, "missing_field", "required field type is missing", field="type")
    status = TYPES.get(doc["type"])
    if status is None:
        return await publish_statuses(ctx, "resend", [], received_at, ignored=1)
    item = Reported(_event(doc, status, received_at), status_dedupe_key("resend", signed.webhook_id))
    return await publish_statuses(ctx, "resend", [item], received_at)


def _event(doc: dict[str, Any], status: DeliveryStatus, received_at: datetime) -> NotificationStatusReported:
    data = obj(doc.get("data"))
    email_id = data.get("email_id")
    if not isinstance(email_id, str) or not email_id:
        raise IngressError(422, "missing_field", "required field data.email_id is missing", field="data.email_id")
    code, reason = _failure(doc["type"], data) if status == "failed" else (None, None)
    return NotificationStatusReported(
        provider="resend", channel="email", provider_message_id=email_id[:200], status=status,
        provider_status=str(doc["type"])[:64], occurred_at=_time(doc.get("created_at"), received_at),
        notification_id=notification_id_or_none(_tags(data).get("notification_id")),
        error_code=code, error_title=reason,
    )


def _failure(kind: str, data: dict[str, Any]) -> tuple[str, str | None]:
    bounce = obj(data.get("bounce"))
    if kind == "email.bounced" and bounce:
        return (f"bounce_{bounce.get('type', '')}_{bounce.get('subType', '')}".lower()[:64],
                str(bounce.get("message") or "")[:500] or None)
    if kind == "email.failed" and isinstance(data.get("failed"), dict):
        return str(data["failed"].get("reason") or "failed")[:64], None
    return kind.removeprefix("email.")[:64], None


def _tags(data: dict[str, Any]) -> dict[str, Any]:
    """Tags come back as an object; accept the `[{name, value}]` form the send API takes, too."""
    tags = data.get("tags")
    if isinstance(tags, list):
        return {str(t.get("name")): t.get("value") for t in tags if isinstance(t, dict)}
    return tags if isinstance(tags, dict) else {}


def _time(value: object, fallback: datetime) -> datetime:
    try:
        return _TIME.validate_python(value)
    except ValidationError:
        return fallback


routes = [Route("/webhooks/resend", endpoint("resend", accept), methods=["POST"])]
