"""Razorpay webhooks, one endpoint per connected account.

    POST /webhooks/razorpay/{account_key}   a studio's (or the platform's) account: the opaque key from
                                            `studiovault accounts connect`, configured in that account's
                                            Razorpay webhook
    POST /webhooks/razorpay                 the platform's own account (kept: the URL its webhook was
                                            configured with before accounts existed)

Each delivery is verified with that account's webhook secrets only (every one in the list: a rotation),
and the payload's `account_id` must be that account's: a body signed with studio A's secret posted to
studio B's endpoint fails verification (401); one that names another account is refused (422).
Mapping: `events.mapping.razorpay`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime

from starlette.requests import Request
from starlette.routing import Route

from events.mapping import razorpay as mapping
from events.mapping.fields import MappingError, event_type_of, pick
from gateways.accounts import Account
from gateways.directory import AccountDirectory
from ingress.gateway import (
    Delivery,
    Receive,
    accept_with,
    evidence_for,
    lookup,
    parse_json,
    refusal,
    secrets_of,
    signer_of,
    verified,
)
from ingress.pipeline import IngressContext, IngressError, endpoint
from ingress.signatures import verify_razorpay

EVENT_ID_HEADER = "x-razorpay-event-id"
SIGNATURE_HEADER = "x-razorpay-signature"
Find = Callable[[Request], Callable[[AccountDirectory], Awaitable[Account | None]]]


def receiver(find: Find) -> Receive:
    async def receive(request: Request, ctx: IngressContext, body: bytes, received_at: datetime) -> Delivery:
        account = await lookup(ctx, find(request))
        secrets = secrets_of(account.credentials.webhook_secrets)
        verified(lambda: verify_razorpay(body, request.headers.get(SIGNATURE_HEADER), secrets))
        event_id = request.headers.get(EVENT_ID_HEADER, "").strip()
        if not event_id:
            raise IngressError(400, "missing_header", "X-Razorpay-Event-Id header is missing", header=EVENT_ID_HEADER)
        doc = parse_json(body)
        try:
            event_type = event_type_of(doc, "event", "Razorpay")
            named = pick(doc, "account_id", str)
        except MappingError as exc:
            raise refusal(exc) from exc
        if named != account.account_ref:
            raise IngressError(422, "account_mismatch", "the payload's account_id is not the account of this endpoint",
                               field="account_id")
        evidence = evidence_for(request, body, event_id=event_id, event_type=event_type,
                                headers=(EVENT_ID_HEADER, SIGNATURE_HEADER), received_at=received_at)
        return Delivery("razorpay", event_id, event_type, doc, evidence, signer_of(account))

    return receive


def _by_key(request: Request) -> Callable[[AccountDirectory], Awaitable[Account | None]]:
    key = str(request.path_params["account_key"])
    return lambda accounts: accounts.by_endpoint_key(key)


def _platform(_: Request) -> Callable[[AccountDirectory], Awaitable[Account | None]]:
    return lambda accounts: accounts.platform("razorpay")


routes = [
    Route("/webhooks/razorpay/{account_key}",
          endpoint("razorpay", accept_with("razorpay", receiver(_by_key), mapping.map_event)), methods=["POST"]),
    Route("/webhooks/razorpay",
          endpoint("razorpay", accept_with("razorpay", receiver(_platform), mapping.map_event)), methods=["POST"]),
]
