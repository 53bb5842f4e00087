"""`POST /webhooks/razorpay`: verify, map and record Razorpay events.

Handled: `payment.captured`, `payment.failed`, `refund.processed`, `payment.dispute.created|won|lost`.
Every other well-formed event type is acknowledged and recorded as ignored. The invoice id travels in
the payment's `notes.invoice_id` (a refund's own notes first, then its payment's).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from events.payments import DisputeCreated, DisputeLost, DisputeWon, PaymentCaptured, PaymentFailed, RefundProcessed
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
from ingress.signatures import verify_razorpay

EVENT_ID_HEADER = "x-razorpay-event-id"
SIGNATURE_HEADER = "x-razorpay-signature"
PAYMENT = "payload.payment.entity"
DISPUTES = {"payment.dispute.created": DisputeCreated, "payment.dispute.won": DisputeWon,
            "payment.dispute.lost": DisputeLost}


def receive(request: Request, ctx: IngressContext, body: bytes, received_at: datetime) -> Delivery:
    verify_razorpay(body, request.headers.get(SIGNATURE_HEADER), secrets(ctx.config.razorpay_webhook_secrets))
    event_id = request.headers.get(EVENT_ID_HEADER, "").strip()
    if not event_id:
        raise IngressError(400, "missing_header", "X-Razorpay-Event-Id header is missing", header=EVENT_ID_HEADER)
    doc = parse_json(body)
    event_type = event_type_of(doc, "event", "Razorpay")
    evidence = evidence_for(request, body, event_id=event_id, event_type=event_type,
                            headers=(EVENT_ID_HEADER, SIGNATURE_HEADER), received_at=received_at)
    return Delivery("razorpay", event_id, event_type, doc, evidence)


def _money(entity: str, doc: dict[str, Any]) -> dict[str, Any]:
    return {"amount_minor": pick(doc, f"{entity}.amount", int),
            "currency": str(pick(doc, f"{entity}.currency", str)).upper()}


def map_event(d: Delivery) -> Fact | Ignore:
    doc, kind = d.doc, d.event_type
    if kind in ("payment.captured", "payment.failed"):
        payment_id = pick(doc, f"{PAYMENT}.id", str)
        notes = notes_of(doc, f"{PAYMENT}.notes")
        fields = {"payment_id": payment_id, **_money(PAYMENT, doc)}
        if kind == "payment.failed":
            reason = pick(doc, f"{PAYMENT}.error_reason", str, required=False) or pick(
                doc, f"{PAYMENT}.error_code", str, required=False)
            fields |= {"attempt_id": payment_id, "reason": reason}
        return Fact(PaymentCaptured if kind == "payment.captured" else PaymentFailed, fields,
                    _invoice_id(notes, f"{PAYMENT}.notes"), notes)
    if kind == "refund.processed":
        if pick(doc, f"{PAYMENT}.captured", bool, required=False) is False:
            return Ignore("refund of a payment that was never captured (an auto-refund): no money was received")
        refund = "payload.refund.entity"
        # Key by key, the payment's notes win: our invoice id travels in the payment's notes, and a refund
        # made with a comment has notes of its own ({"comment": ...}) without it.
        notes = {**notes_of(doc, f"{refund}.notes"), **notes_of(doc, f"{PAYMENT}.notes")}
        fields = {"payment_id": pick(doc, f"{refund}.payment_id", str), "refund_id": pick(doc, f"{refund}.id", str),
                  **_money(refund, doc)}
        return Fact(RefundProcessed, fields, _invoice_id(notes, f"{PAYMENT}.notes"), notes)
    if kind in DISPUTES:
        dispute = "payload.dispute.entity"
        notes = notes_of(doc, f"{PAYMENT}.notes")
        fields = {"payment_id": pick(doc, f"{dispute}.payment_id", str), "dispute_id": pick(doc, f"{dispute}.id", str),
                  **_money(dispute, doc)}
        if kind == "payment.dispute.lost":
            fields["amount_minor"] = pick(doc, f"{dispute}.amount_deducted", int)
        return Fact(DISPUTES[kind], fields, _invoice_id(notes, f"{PAYMENT}.notes"), notes)
    return Ignore(f"razorpay event {kind} is not applied by the pipeline")


def _invoice_id(notes: dict[str, Any], where: str) -> str:
    value = notes.get("invoice_id")
    if not isinstance(value, str) or not value:
        raise IngressError(422, "missing_field", f"required field {where}.invoice_id is missing",
                           field=f"{where}.invoice_id")
    return value


routes = [Route("/webhooks/razorpay", endpoint("razorpay", accept_with("razorpay", receive, map_event)),
                methods=["POST"])]
