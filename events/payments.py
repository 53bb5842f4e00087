"""Payment facts from the gateways (Razorpay, Stripe), as the ingress maps them.

Amounts are integers in the currency's minor unit (paise), exactly as the gateway sent them; the
currency is upper-case ISO 4217. `payment_id` is the gateway's payment object (Razorpay `pay_…`,
Stripe PaymentIntent `pi_…`): refunds and disputes name it too. Each fact also names its own gateway
object (the payment, refund or dispute id), which the database records once per kind.

`evidence` is what the ingress saw: the raw body's sha256, the headers that matter and when it arrived
(or, for a fact found by reconciliation, the listed object's sha256 and when it was listed).

The signing account. Every fact names the gateway account that signed it (`account_id`: the gateway's
`acc_...`/`acct_...`) and who owns that account (`account_role`, `account_org_id`), copied by the
ingress or the reconciler from our `gateway_accounts` row — never from the payload. The handler applies
a fact only to an invoice of that org (a studio's account) or to an overage invoice (the platform's).

One fact, one key: `PaymentFact.dedupe_key()` is `<gateway>:<account>:<kind>:<object id>`, the same
whether a webhook or the reconciler brings the fact, so the inbox's unique key lets only the first in.
"""

from __future__ import annotations

from typing import ClassVar, Literal, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from events.envelope import Event
from events.ids import InvoiceId, OrgId

Gateway = Literal["razorpay", "stripe"]
# What a gateway object is, in our ledger (`gateway_objects.kind`).
ObjectKind = Literal["capture", "failure", "refund", "refund_reversed", "dispute_created", "dispute_won",
                     "dispute_lost"]
AccountRole = Literal["studio", "platform"]

_GATEWAY_ID = Field(min_length=3, max_length=80, pattern=r"^[A-Za-z0-9_]+$")


class GatewayEvidence(BaseModel):
    """What the ingress received, kept with the event in the inbox (no body: it holds customer PII)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gateway_event_id: str = Field(min_length=1, max_length=120)
    gateway_event_type: str = Field(min_length=1, max_length=80)
    body_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    headers: dict[str, str]
    received_at: AwareDatetime
    # `webhook`: a delivery; `reconciliation`: listed from the gateway's API (the id is the event's, or the
    # object's where the API has no event: Razorpay).
    source: Literal["webhook", "reconciliation"] = "webhook"


# v2 (migration 0009): every fact names the gateway account that signed it; v1 events (before gateway
# accounts) are no longer applied: a pending one is dead-lettered as an unknown version, and
# `studiovault reconcile` publishes whatever of it the ledger lacks.
PAYMENT_SCHEMA_VERSION = 2


class PaymentFact(Event):
    """Base of the payment events: one gateway object, for one of our invoices. Not routed itself."""

    schema_version: ClassVar[int] = PAYMENT_SCHEMA_VERSION

    kind: ClassVar[ObjectKind]

    gateway: Gateway
    invoice_id: InvoiceId
    payment_id: str = _GATEWAY_ID
    amount_minor: int = Field(ge=0, le=2**53 - 1)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    evidence: GatewayEvidence
    # The account that signed it, from our gateway_accounts row (see the module docstring).
    account_id: str = _GATEWAY_ID
    account_role: AccountRole
    account_org_id: OrgId | None

    @model_validator(mode="after")
    def _owner_matches_role(self) -> Self:
        if (self.account_role == "platform") != (self.account_org_id is None):
            raise ValueError("account_org_id names the studio that owns the account; the platform's has none")
        return self

    def lock_key(self) -> str | None:
        return self.invoice_id

    def object_id(self) -> str:
        """The gateway object this fact records (payment, refund or dispute id)."""
        return self.payment_id

    def dedupe_key(self) -> str:
        """The inbox key of this fact, whichever path brings it (webhook, sibling event, reconciliation)."""
        return fact_dedupe_key(self.gateway, self.account_id, self.kind, self.object_id())


class PaymentCaptured(PaymentFact):
    """Money captured: `amount_minor` counts toward the invoice (a partial capture is one of several)."""

    event_type = "payment.captured"
    kind = "capture"

    @model_validator(mode="after")
    def _not_zero(self) -> Self:
        if self.amount_minor == 0:
            raise ValueError("a capture of 0 moves no money and confirms nothing")
        return self


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


class RefundReversed(PaymentFact):
    """A refund that failed or was cancelled after it succeeded (Stripe `refund.failed`, `refund.updated`
    with status failed|canceled; Razorpay `refund.failed`): the money is back with the merchant. A
    compensating transaction restores what the refund took, once; if the refund itself was never
    recorded (it never succeeded, or its event is still on its way), nothing moves until it is.
    `amount_minor`: the refund's amount."""

    event_type = "payment.refund_reversed"
    kind = "refund_reversed"
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

    schema_version: ClassVar[int] = PAYMENT_SCHEMA_VERSION

    event_type = "payment.gateway_event_ignored"
    gateway: Gateway
    reason: str = Field(max_length=200)
    evidence: GatewayEvidence


PAYMENT_FACTS: tuple[type[PaymentFact], ...] = (
    PaymentCaptured, PaymentFailed, RefundProcessed, RefundReversed, DisputeCreated, DisputeWon, DisputeLost,
)


def fact_dedupe_key(gateway: str, account_id: str, kind: str, object_id: str) -> str:
    """`<gateway>:<account>:<kind>:<object id>`, e.g. `razorpay:acc_X:capture:pay_Y`: one fact, one key."""
    return f"{gateway}:{account_id}:{kind}:{object_id}"


def gateway_dedupe_key(gateway: Gateway, gateway_event_id: str) -> str:
    """The inbox key of a gateway delivery that maps to no fact (recorded as ignored): its event id."""
    return f"{gateway}:event:{gateway_event_id}"
