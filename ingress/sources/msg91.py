"""`POST /webhooks/msg91/<token>`: MSG91 SMS delivery reports (DLR).

MSG91 does not sign delivery reports (no signature header or secret exists in any of its webhook
versions), so the report URL we configure in MSG91 carries an unguessable token as its last path
segment: one of `SV_MSG91_WEBHOOK_TOKENS` (several during a rotation), compared in constant time. A
path segment rather than a query string, because query strings end up in more logs. No or a wrong
token: 401, nothing written. Serve it over TLS only; the token is the whole authentication, so a
report can only move a send we recorded (by its request id), never create one.

Accepted shapes (MSG91 help, "webhook" versions): v2, the default, `application/x-www-form-urlencoded`
with one field `data` = a JSON list of `{requestId, report: [{number, status, desc, failedReason,
date}, ...]}`; v3, one flat JSON object `{requestId, number, status, desc, date}`; "Webhook (New)" with
our template `{requestId, telNum, status, deliveryTime, failureReason}`. Status codes: 1 delivered;
2 failed, 9 NDNC, 16/25 rejected, 17 blocked → failed (the code is kept); anything else is recorded
as info (no transition). `date` is IST wall-clock time ("YYYY-MM-DD HH:MM:SS").
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from events.notifications import DeliveryStatus, NotificationStatusReported, status_dedupe_key
from ingress.pipeline import IngressContext, IngressError, SignatureRefused, endpoint
from ingress.statuses import Reported, configured, matches_any, publish_statuses

IST = timezone(timedelta(hours=5, minutes=30))
DELIVERED = {"1", "delivered"}
FAILED = {"2", "9", "16", "17", "25", "failed", "rejected", "ndnc", "blocked", "undelivered"}


async def no_token(request: Request, body: bytes, received_at: datetime, ctx: IngressContext) -> Response:
    del request, body, received_at, ctx
    raise SignatureRefused(401, "missing_token",
                           "the delivery-report URL must end with its token: /webhooks/msg91/<token>")


async def accept(request: Request, body: bytes, received_at: datetime, ctx: IngressContext) -> Response:
    tokens = configured(ctx.config.msg91_webhook_tokens, "MSG91 webhook token")
    if not matches_any(str(request.path_params.get("token", "")), tokens):
        raise SignatureRefused(401, "invalid_token", "the delivery-report URL's token is not ours")
    reports = _reports(body, request.headers.get("content-type", ""))
    items = [_reported(r, received_at) for r in reports]
    return await publish_statuses(ctx, "msg91", items, received_at)


def _reports(body: bytes, content_type: str) -> list[dict[str, Any]]:
    """Flat reports `{requestId, number, status, desc, date}` from any accepted shape."""
    if "application/x-www-form-urlencoded" in content_type:
        data = parse_qs(body.decode("utf-8", "replace")).get("data")
        if not data:
            raise IngressError(422, "missing_field", "the form has no data field", field="data")
        doc: Any = _json(data[0].encode())
    else:
        doc = _json(body)
    requests = doc if isinstance(doc, list) else [doc]
    flat: list[dict[str, Any]] = []
    for request in requests:
        if not isinstance(request, dict):
            raise IngressError(422, "invalid_field", "a delivery report must be an object")
        nested = request.get("report")
        if isinstance(nested, list):  # v2: one request, a report per number
            flat += [{**r, "requestId": request.get("requestId")} for r in nested if isinstance(r, dict)]
        else:  # v3 / Webhook (New): one number
            flat.append({"requestId": request.get("requestId"),
                         "number": request.get("number") or request.get("telNum"), "status": request.get("status"),
                         "desc": request.get("desc") or request.get("failureReason"),
                         "date": request.get("date") or request.get("deliveryTime")})
    return flat


def _json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise IngressError(400, "invalid_json", f"the delivery report is not JSON: {exc}") from exc


def _reported(report: dict[str, Any], received_at: datetime) -> Reported:
    request_id, status = report.get("requestId"), report.get("status")
    if not isinstance(request_id, str) or not request_id:
        raise IngressError(422, "missing_field", "requestId is missing", field="requestId")
    if not isinstance(status, str | int) or isinstance(status, bool) or str(status) == "":
        raise IngressError(422, "missing_field", "status is missing", field="status")
    code = str(status).strip()
    normalised: DeliveryStatus = ("delivered" if code.lower() in DELIVERED
                                  else "failed" if code.lower() in FAILED else "info")
    reason = str(report.get("failedReason") or report.get("desc") or "")[:500] or None
    event = NotificationStatusReported(
        provider="msg91", channel="sms", provider_message_id=request_id[:200], status=normalised,
        provider_status=f"dlr_{code}"[:64], occurred_at=_when(report.get("date"), received_at),
        error_code=code if normalised == "failed" else None, error_title=reason if normalised == "failed" else None,
    )
    number = str(report.get("number") or "")
    return Reported(event, status_dedupe_key("msg91", request_id, number, code))


def _when(value: object, received_at: datetime) -> datetime:
    if isinstance(value, str):
        try:
            return datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=IST)
        except ValueError:
            pass
    return received_at


routes = [
    Route("/webhooks/msg91", endpoint("msg91", no_token), methods=["POST"]),
    Route("/webhooks/msg91/{token}", endpoint("msg91", accept), methods=["POST"]),
]
