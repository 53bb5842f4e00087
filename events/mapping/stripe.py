"""Stripe Event objects → payment facts (a webhook delivery and an event listed by /v1/events alike).

Handled: `payment_intent.succeeded` (capture), `payment_intent.payment_failed`, refunds from Refund
objects (`refund.created|updated`, `charge.refund.updated` once `status` is `succeeded`; `refund.failed`,
and the same events once `status` is `failed` or `canceled`, as a reversal), `charge.dispute.created` and
`charge.dispute.closed` (won/lost). Everything else is acknowledged and ignored — `charge.refunded`
included: it carries only a running refund total, no refund id.

Our invoice id is in the PaymentIntent's `metadata.invoice_id`. Refunds and disputes carry no metadata,
so they are traced through their `payment_intent` to the invoice recorded with that payment.
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

OBJ = "data.object"
REFUND_EVENTS = frozenset({"refund.created", "refund.updated", "refund.failed", "charge.refund.updated"})
CLOSED: dict[str, type[PaymentFact]] = {"won": DisputeWon, "lost": DisputeLost}
# What the reconciler lists (GET /v1/events `types[]`, at most 20).
HANDLED_TYPES: tuple[str, ...] = ("payment_intent.succeeded", "payment_intent.payment_failed", *sorted(REFUND_EVENTS),
                                  "charge.dispute.created", "charge.dispute.closed")


def _currency(doc: Mapping[str, Any]) -> str:
    return str(pick(doc, f"{OBJ}.currency", str)).upper()


def _optional_invoice(doc: Mapping[str, Any]) -> str | None:
    value = notes_of(doc, f"{OBJ}.metadata").get("invoice_id")
    return value if isinstance(value, str) and value else None


def map_event(event_type: str, doc: Mapping[str, Any]) -> Fact | Ignore:
    """The fact a Stripe event records, or why it records none."""
    if event_type in ("payment_intent.succeeded", "payment_intent.payment_failed"):
        return _payment_intent(doc, event_type)
    if event_type in REFUND_EVENTS:
        return _refund(doc)
    if event_type in ("charge.dispute.created", "charge.dispute.closed"):
        return _dispute(doc, event_type)
    return Ignore(f"stripe event {event_type} is not applied by the pipeline")


def _payment_intent(doc: Mapping[str, Any], kind: str) -> Fact:
    metadata = notes_of(doc, f"{OBJ}.metadata")
    invoice_id = _optional_invoice(doc)
    if invoice_id is None:
        raise MappingError(422, "missing_field", f"required field {OBJ}.metadata.invoice_id is missing",
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


def _refund(doc: Mapping[str, Any]) -> Fact | Ignore:
    status = pick(doc, f"{OBJ}.status", str)
    cls: type[PaymentFact]
    if status == "succeeded":
        cls = RefundProcessed
    elif status in ("failed", "canceled"):
        cls = RefundReversed  # applied once however many of its sibling events arrive (one dedupe key)
    else:
        return Ignore(f"refund status is {status}: applied once succeeded, reversed once failed or canceled")
    fields = {"payment_id": pick(doc, f"{OBJ}.payment_intent", str), "refund_id": pick(doc, f"{OBJ}.id", str),
              "amount_minor": pick(doc, f"{OBJ}.amount", int), "currency": _currency(doc)}
    return Fact(cls, fields, _optional_invoice(doc))


def _dispute(doc: Mapping[str, Any], kind: str) -> Fact | Ignore:
    cls: type[PaymentFact] = DisputeCreated
    if kind == "charge.dispute.closed":
        status = pick(doc, f"{OBJ}.status", str)
        if status not in CLOSED:
            return Ignore(f"dispute closed as {status}: neither won nor lost")
        cls = CLOSED[status]
    fields = {"payment_id": pick(doc, f"{OBJ}.payment_intent", str), "dispute_id": pick(doc, f"{OBJ}.id", str),
              "amount_minor": pick(doc, f"{OBJ}.amount", int), "currency": _currency(doc)}
    return Fact(cls, fields, _optional_invoice(doc))
