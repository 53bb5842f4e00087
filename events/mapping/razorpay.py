"""Razorpay documents → payment facts.

Webhooks handled: `payment.captured`, `payment.failed`, `refund.processed`, `refund.failed` (a refund
reversed), `payment.dispute.created|won|lost`; every other well-formed type is acknowledged and ignored.
The invoice id travels in the payment's `notes.invoice_id` (a refund's own notes first, then its
payment's); a refund or dispute without it is traced through its payment in our ledger.

The list APIs (`GET /v1/payments|refunds|disputes`) return entities, not events: `api_documents` shapes
each as the webhook body its current state would have produced, so one mapper serves both paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from events.mapping.fields import Fact, Ignore, MappingError, notes_of, pick
from events.payments import (
    DisputeCreated,
    DisputeLost,
    DisputeWon,
    PaymentCaptured,
    PaymentFact,
    PaymentFailed,
    RefundProcessed,
    RefundReversed,
)

PAYMENT = "payload.payment.entity"
REFUND = "payload.refund.entity"
DISPUTE = "payload.dispute.entity"
DISPUTES: dict[str, type[PaymentFact]] = {"payment.dispute.created": DisputeCreated,
                                          "payment.dispute.won": DisputeWon, "payment.dispute.lost": DisputeLost}
REFUNDS: dict[str, type[PaymentFact]] = {"refund.processed": RefundProcessed, "refund.failed": RefundReversed}


def _money(entity: str, doc: Mapping[str, Any]) -> dict[str, Any]:
    return {"amount_minor": pick(doc, f"{entity}.amount", int),
            "currency": str(pick(doc, f"{entity}.currency", str)).upper()}


def _invoice_id(notes: Mapping[str, Any], where: str, required: bool) -> str | None:
    value = notes.get("invoice_id")
    if isinstance(value, str) and value:
        return value
    if required:
        raise MappingError(422, "missing_field", f"required field {where}.invoice_id is missing",
                           field=f"{where}.invoice_id")
    return None


def map_event(event_type: str, doc: Mapping[str, Any]) -> Fact | Ignore:
    """The fact a Razorpay event (webhook body) records, or why it records none."""
    if event_type in ("payment.captured", "payment.failed"):
        payment_id = pick(doc, f"{PAYMENT}.id", str)
        notes = notes_of(doc, f"{PAYMENT}.notes")
        fields = {"payment_id": payment_id, **_money(PAYMENT, doc)}
        if event_type == "payment.failed":
            reason = pick(doc, f"{PAYMENT}.error_reason", str, required=False) or pick(
                doc, f"{PAYMENT}.error_code", str, required=False)
            fields |= {"attempt_id": payment_id, "reason": reason}
        return Fact(PaymentCaptured if event_type == "payment.captured" else PaymentFailed, fields,
                    _invoice_id(notes, f"{PAYMENT}.notes", required=True), notes)
    if event_type in REFUNDS:
        if pick(doc, f"{PAYMENT}.captured", bool, required=False) is False:
            return Ignore("refund of a payment that was never captured (an auto-refund): no money was received")
        # Key by key, the payment's notes win: our invoice id travels in the payment's notes, and a refund
        # made with a comment has notes of its own ({"comment": ...}) without it.
        notes = {**notes_of(doc, f"{REFUND}.notes"), **notes_of(doc, f"{PAYMENT}.notes")}
        fields = {"payment_id": pick(doc, f"{REFUND}.payment_id", str), "refund_id": pick(doc, f"{REFUND}.id", str),
                  **_money(REFUND, doc)}
        return Fact(REFUNDS[event_type], fields, _invoice_id(notes, f"{PAYMENT}.notes", required=False), notes)
    if event_type in DISPUTES:
        notes = notes_of(doc, f"{PAYMENT}.notes")
        fields = {"payment_id": pick(doc, f"{DISPUTE}.payment_id", str), "dispute_id": pick(doc, f"{DISPUTE}.id", str),
                  **_money(DISPUTE, doc)}
        if event_type == "payment.dispute.lost":
            fields["amount_minor"] = pick(doc, f"{DISPUTE}.amount_deducted", int)
        return Fact(DISPUTES[event_type], fields, _invoice_id(notes, f"{PAYMENT}.notes", required=False), notes)
    return Ignore(f"razorpay event {event_type} is not applied by the pipeline")


# ---- the list APIs ----------------------------------------------------------------------------------------

_DISPUTE_EVENTS = {"won": ("payment.dispute.created", "payment.dispute.won"),
                   "lost": ("payment.dispute.created", "payment.dispute.lost")}


def _events_for(kind: str, item: Mapping[str, Any]) -> tuple[str, ...]:
    status = item.get("status")
    if kind == "payments":
        if status == "failed":
            return ("payment.failed",)
        return ("payment.captured",) if item.get("captured") is True else ()
    if kind == "refunds":
        return {"processed": ("refund.processed",), "failed": ("refund.failed",)}.get(str(status), ())
    if kind == "disputes":
        return _DISPUTE_EVENTS.get(str(status), ("payment.dispute.created",))
    return ()


def api_documents(kind: str, item: Mapping[str, Any],
                  payments: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """The webhook bodies the current state of a listed entity would have produced (kind: payments,
    refunds, disputes), oldest first: a lost dispute was opened, then lost. `payments` are the payment
    entities known by id (their notes carry the invoice id refunds and disputes lack). Empty: a state that
    records nothing (a payment only created or authorized, a pending refund)."""
    entity = {"payments": "payment", "refunds": "refund", "disputes": "dispute"}[kind]
    payload: dict[str, Any] = {entity: {"entity": dict(item)}}
    payment = payments.get(str(item.get("payment_id")))
    if entity != "payment" and payment is not None:
        payload["payment"] = {"entity": dict(payment)}
    return [(event, {"entity": "event", "event": event, "payload": payload}) for event in _events_for(kind, item)]
