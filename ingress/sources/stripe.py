"""Stripe webhooks: the platform's two endpoints.

    POST /webhooks/stripe           the platform account's own events (no `account`): overage invoices
    POST /webhooks/stripe/connect   the Connect endpoint: events of every connected account, each
                                    carrying `account: acct_...`

Each endpoint has its own signing secrets, kept (encrypted) on the Stripe platform account's row:
`webhook_secrets` for the first, `connect_webhook_secrets` for the second (`Stripe-Signature`, any `v1`
of any secret, 300 s tolerance). A Connect event is then attributed to the org whose connected account
its `account` names; one for an account no org has connected is acknowledged and recorded as ignored.
Mapping: `events.mapping.stripe`.
"""

from __future__ import annotations

import re
from datetime import datetime

from starlette.requests import Request
from starlette.routing import Route

from events.mapping import stripe as mapping
from events.mapping.fields import MappingError, event_type_of
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
from ingress.signatures import verify_stripe

EVENT_ID = re.compile(r"^evt_[A-Za-z0-9]+$")
ACCOUNT_ID = re.compile(r"^acct_[A-Za-z0-9]+$")
SIGNATURE_HEADER = "stripe-signature"


def receiver(connect: bool) -> Receive:
    async def receive(request: Request, ctx: IngressContext, body: bytes, received_at: datetime) -> Delivery:
        platform = await lookup(ctx, lambda accounts: accounts.platform("stripe"))
        creds = platform.credentials
        secrets = secrets_of(creds.connect_webhook_secrets if connect else creds.webhook_secrets)
        verified(lambda: verify_stripe(body, request.headers.get(SIGNATURE_HEADER), secrets,
                                       ctx.config.stripe_tolerance_s, received_at.timestamp()))
        doc = parse_json(body)
        event_id = doc.get("id")
        if not isinstance(event_id, str) or not EVENT_ID.match(event_id):
            raise IngressError(422, "invalid_field", f"'id' must be a Stripe event id (evt_...), got {event_id!r}",
                               field="id")
        try:
            event_type = event_type_of(doc, "type", "Stripe")
        except MappingError as exc:
            raise refusal(exc) from exc
        named = doc.get("account")
        evidence = evidence_for(request, body, event_id=event_id, event_type=event_type, headers=(SIGNATURE_HEADER,),
                                received_at=received_at)
        if not connect:
            if named is not None:
                raise IngressError(422, "account_mismatch", "a connected account's event on the platform's endpoint:"
                                   " Connect events go to /webhooks/stripe/connect", field="account")
            return Delivery("stripe", event_id, event_type, doc, evidence, signer_of(platform))
        if not isinstance(named, str) or not ACCOUNT_ID.match(named):
            raise IngressError(422, "missing_field", "a Connect event must name its connected account (acct_...)",
                               field="account")
        try:
            studio = await lookup(ctx, lambda accounts: accounts.by_ref("stripe", named))
        except IngressError as exc:
            if exc.status != 401:
                raise
            studio = None  # verified by the platform, for an account no org has connected: recorded as ignored
        signer = signer_of(studio) if studio is not None and studio.role == "studio" else None
        return Delivery("stripe", event_id, event_type, doc, evidence, signer)

    return receive


routes = [
    Route("/webhooks/stripe", endpoint("stripe", accept_with("stripe", receiver(False), mapping.map_event)),
          methods=["POST"]),
    Route("/webhooks/stripe/connect", endpoint("stripe", accept_with("stripe", receiver(True), mapping.map_event)),
          methods=["POST"]),
]
