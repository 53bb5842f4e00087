"""`POST /webhooks/stripe`: verify, map and record Stripe events.

Handled: `payment_intent.succeeded` (capture), `payment_intent.payment_failed`, refunds from Refund
objects (`refund.created|updated`, `charge.refund.updated`, once `status` is `succeeded`),
`charge.dispute.created` and `charge.dispute.closed` (won/lost). Everything else is acknowledged and
recorded as ignored — `charge.refunded` included: it carries only a running refund total, no refund id.

Our invoice id is in the PaymentIntent's `metadata.invoice_id`. Refunds and disputes carry no metadata,
so they are traced through their `payment_intent` to the invoice recorded with that payment.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from events.payments import (
    DisputeCreated,
    DisputeLost,
    DisputeWon,
    PaymentCaptured,
    PaymentFact,
    PaymentFailed,
    RefundProcessed,
)
from ingress.gateway import (
    Delivery,
    Fact,
    Ignore,
    accept_with,
    event_type_of,
    evidence_for,
    notes_of,
    parse_json,
    pick,
    secrets,
)
from ingress.pipeline import IngressContext, IngressError, endpoint
from ingress.signatures import verify_stripe

EVENT_ID = re.compile(r"^evt_[A-Za-z0-9]+$")
SIGNATURE_HEADER = "stripe-signature"
OBJ = "data.object"
REFUND_EVENTS = frozenset({"refund.created", "refund.updated", "charge.refund.updated"})
CLOSED: dict[str, type[PaymentFact]] = {"won": DisputeWon, "lost": DisputeLost}


def receive(request: Request, ctx: IngressContext, body: bytes, received_at: datetime) -> Delivery:
    verify_stripe(body, request.headers.get(SIGNATURE_HEADER), secrets(ctx.config.stripe_webhook_secrets),
                  ctx.config.stripe_tolerance_s, received_at.timestamp())
    doc = parse_json(body)
    event_id = doc.get("id")
    if not isinstance(event_id, str) or not EVENT_ID.match(event_id):
        raise IngressError(422, "invalid_field", f"'id' must be a Stripe event id (evt_...), got {event_id!r}",
                           field="id")
    event_type = event_type_of(doc, "type", "Stripe")
    evidence = evidence_for(request, body, event_id=event_id, event_type=event_type, headers=(SIGNATURE_HEADER,),
                            received_at=received_at)
    return Delivery("stripe", event_id, event_type, doc, evidence)


def _currency(doc: dict[str, Any]) -> str:
    return str(pick(doc, f"{OBJ}.currency", str)).upper()


def _optional_invoice(doc: dict[str, Any]) -> str | None:
    value = notes_of(doc, f"{OBJ}.metadata").get("invoice_id")
    return value if isinstance(value, str) and value else None


def map_event(d: Delivery) -> Fact | Ignore:
    if d.event_type in ("payment_intent.succeeded", "payment_intent.payment_failed"):
        return _payment_intent(d.doc, d.event_type)
    if d.event_type in REFUND_EVENTS:
        return _refund(d.doc)
    if d.event_type in ("charge.dispute.created", "charge.dispute.closed"):
        return _dispute(d.doc, d.event_type)
    return Ignore(f"stripe event {d.event_type} is not applied by the pipeline")


def _payment_intent(doc: dict[str, Any], kind: str) -> Fact:
    metadata = notes_of(doc, f"{OBJ}.metadata")
    invoice_id = _optional_invoice(doc)
    if invoice_id is None:
        raise IngressError(422, "missing_field", f"required field {OBJ}.metadata.invoice_id is missing",
                           field=f"{OBJ}.metadata.invoice_id")
    payment_id = pick(doc, f"{OBJ}.id", str)
    if kind == "payment_intent.succeeded":
        fields = {"payment_id": payment_id, "amount_minor": pick(doc, f"{OBJ}.amount_received", int),
                  "currency": _currency(doc)}
        return Fact(PaymentCaptured, fields, invoice_id, metadata)
    error = f"{OBJ}.last_payment_error"
    reason = pick(doc, f"{error}.decline_code", str, required=False) or pick(doc, f"{error}.code", str,
                                                                              required=False)
    attempt = pick(doc, f"{error}.charge", str, required=False) or payment_id  # one failure per charge
    fields = {"payment_id": payment_id, "attempt_id": attempt, "reason": reason,
              "amount_minor": pick(doc, f"{OBJ}.amount", int), "currency": _currency(doc)}
    return Fact(PaymentFailed, fields, invoice_id, metadata)


def _refund(doc: dict[str, Any]) -> Fact | Ignore:
    status = pick(doc, f"{OBJ}.status", str)
    if status != "succeeded":
        return Ignore(f"refund status is {status}: applied only once succeeded")
    fields = {"payment_id": pick(doc, f"{OBJ}.payment_intent", str), "refund_id": pick(doc, f"{OBJ}.id", str),
              "amount_minor": pick(doc, f"{OBJ}.amount", int), "currency": _currency(doc)}
    return Fact(RefundProcessed, fields, _optional_invoice(doc))


def _dispute(doc: dict[str, Any], kind: str) -> Fact | Ignore:
    cls: type[PaymentFact] = DisputeCreated
    if kind == "charge.dispute.closed":
        status = pick(doc, f"{OBJ}.status", str)
        if status not in CLOSED:
            return Ignore(f"dispute closed as {status}: neither won nor lost")
        cls = CLOSED[status]
    fields = {"payment_id": pick(doc, f"{OBJ}.payment_intent", str), "dispute_id": pick(doc, f"{OBJ}.id", str),
              "amount_minor": pick(doc, f"{OBJ}.amount", int), "currency": _currency(doc)}
    return Fact(cls, fields, _optional_invoice(doc))


routes = [Route("/webhooks/stripe", endpoint("stripe", accept_with("stripe", receive, map_event)),
                methods=["POST"])]
