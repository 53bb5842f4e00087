"""Payment facts from the gateways (Razorpay, Stripe), as the ingress maps them.

Amounts are integers in the currency's minor unit (paise), exactly as the gateway sent them; the
currency is upper-case ISO 4217. `payment_id` is the gateway's payment object (Razorpay `pay_…`,
Stripe PaymentIntent `pi_…`): refunds and disputes name it too. Each fact also names its own gateway
object (the payment, refund or dispute id), which the database records once per kind.

`evidence` is what the ingress saw: the raw body's sha256, the headers that matter and when it arrived.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from events.envelope import Event
from events.ids import InvoiceId

Gateway = Literal["razorpay", "stripe"]
# What a gateway object is, in our ledger (`gateway_objects.kind`).
ObjectKind = Literal["capture", "failure", "refund", "dispute_created", "dispute_won", "dispute_lost"]

_GATEWAY_ID = Field(min_length=3, max_length=80, pattern=r"^[A-Za-z0-9_]+$")


class GatewayEvidence(BaseModel):
    """What the ingress received, kept with the event in the inbox (no body: it holds customer PII)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gateway_event_id: str = Field(min_length=1, max_length=120)
    gateway_event_type: str = Field(min_length=1, max_length=80)
    body_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    headers: dict[str, str]
    received_at: AwareDatetime


class PaymentFact(Event):
    """Base of the payment events: one gateway object, for one of our invoices. Not routed itself."""

    kind: ClassVar[ObjectKind]

    gateway: Gateway
    invoice_id: InvoiceId
    payment_id: str = _GATEWAY_ID
    amount_minor: int = Field(ge=0, le=2**53 - 1)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    evidence: GatewayEvidence

    def lock_key(self) -> str | None:
        return self.invoice_id

    def object_id(self) -> str:
        """The gateway object this fact records (payment, refund or dispute id)."""
        return self.payment_id


class PaymentCaptured(PaymentFact):
    """Money captured: `amount_minor` counts toward the invoice (a partial capture is one of several)."""

    event_type = "payment.captured"
    kind = "capture"


class PaymentFailed(PaymentFact):
    """A payment attempt failed; recorded, moves no money. `attempt_id` names the failed attempt."""

    event_type = "payment.failed"
    kind = "failure"
    attempt_id: str = _GATEWAY_ID
    reason: str | None = Field(None, max_length=200)

    def object_id(self) -> str:
        return self.attempt_id


class RefundProcessed(PaymentFact):
    """Money returned to the customer: `amount_minor` is subtracted from what the invoice has received."""

    event_type = "payment.refund_processed"
    kind = "refund"
    refund_id: str = _GATEWAY_ID

    def object_id(self) -> str:
        return self.refund_id


class _DisputeFact(PaymentFact):
    dispute_id: str = _GATEWAY_ID

    def object_id(self) -> str:
        return self.dispute_id


class DisputeCreated(_DisputeFact):
    """A chargeback opened; no money moves until it is lost. `amount_minor`: the disputed amount."""

    event_type = "payment.dispute_created"
    kind = "dispute_created"


class DisputeWon(_DisputeFact):
    """The dispute closed in our favour; no money moves."""

    event_type = "payment.dispute_won"
    kind = "dispute_won"


class DisputeLost(_DisputeFact):
    """The dispute was lost: `amount_minor` (the amount deducted) is subtracted from what was received."""

    event_type = "payment.dispute_lost"
    kind = "dispute_lost"


class GatewayEventIgnored(Event):
    """A verified gateway event we do not apply (acknowledged so the gateway stops retrying).
    Published with inbox status `ignored`; kept as evidence."""

    event_type = "payment.gateway_event_ignored"
    gateway: Gateway
    reason: str = Field(max_length=200)
    evidence: GatewayEvidence


PAYMENT_FACTS: tuple[type[PaymentFact], ...] = (
    PaymentCaptured, PaymentFailed, RefundProcessed, DisputeCreated, DisputeWon, DisputeLost,
)


def gateway_dedupe_key(gateway: Gateway, gateway_event_id: str) -> str:
    """The inbox dedupe key of a gateway delivery: a redelivery of the same gateway event is a duplicate."""
    return f"{gateway}:event:{gateway_event_id}"
