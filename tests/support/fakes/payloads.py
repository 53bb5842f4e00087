"""Gateway objects and signed webhook bodies, in each gateway's wire format (see /work/notes/money.md).

The same dict goes into a fake API's state and into a webhook body, so a test can make a payment reach
the pipeline both ways and assert it is applied once:

    pay = rzp_payment(amount=50_000, notes={"invoice_id": "inv_1"})
    account.add("payments", pay)                                  # what GET /v1/payments lists
    body, headers = rzp_webhook_request(rzp_event("payment.captured", account.account_id, payment=pay), secret)

    pi = stripe_payment_intent(amount=50_000, metadata={"invoice_id": "inv_1"})
    event = stripe_event("payment_intent.succeeded", pi, account="acct_1Studio")
    stripe_state.add_event(event)                                 # what GET /v1/events lists (Stripe-Account)
    body, headers = stripe_webhook_request(event, "whsec_...")    # the Connect endpoint's delivery

Only the standard library is used.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import secrets
import string
import time
from typing import Any

JSON = dict[str, Any]
STRIPE_API_VERSION = "2024-06-20"
_ALPHABET = string.ascii_letters + string.digits


def _rand(n: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(n))


def rzp_id(prefix: str) -> str:
    """A Razorpay-shaped id: `pay_`, `rfnd_`, `disp_`, `order_`, `acc_` + 14 base62 characters."""
    return f"{prefix}_{_rand(14)}"


def stripe_id(prefix: str) -> str:
    """A Stripe-shaped id: `pi_`, `ch_`, `re_`, `dp_`, `evt_`, `acct_` + 24 base62 characters."""
    return f"{prefix}_{_rand(24)}"


def now() -> int:
    return int(time.time())


# ---- Razorpay ------------------------------------------------------------------------------------------

def _notes(notes: dict[str, str] | None) -> Any:
    # Razorpay renders empty notes as a JSON array (`"notes": []`), non-empty ones as an object.
    return dict(notes) if notes else []


def rzp_payment(*, amount: int, currency: str = "INR", status: str = "captured", payment_id: str | None = None,
                notes: dict[str, str] | None = None, created_at: int | None = None, method: str = "upi",
                amount_refunded: int = 0, order_id: str | None = None) -> JSON:
    """A payment entity as `GET /v1/payments` lists it and `payload.payment.entity` carries it."""
    failed = status == "failed"
    return {
        "id": payment_id or rzp_id("pay"), "entity": "payment", "amount": amount, "currency": currency,
        "status": status, "order_id": order_id or rzp_id("order"), "invoice_id": None, "international": False,
        "method": method, "amount_refunded": amount_refunded,
        "refund_status": None if not amount_refunded else ("full" if amount_refunded >= amount else "partial"),
        "captured": status in ("captured", "refunded"), "description": None, "card_id": None, "bank": None,
        "wallet": None, "vpa": "gaurav.kumar@exampleupi" if method == "upi" else None,
        "email": "gaurav.kumar@example.com", "contact": "+919000090000", "notes": _notes(notes),
        "fee": None if failed else amount * 2 // 100, "tax": None if failed else amount * 36 // 10_000,
        "error_code": "BAD_REQUEST_ERROR" if failed else None,
        "error_description": "Payment processing failed because of incorrect OTP" if failed else None,
        "error_source": "customer" if failed else None, "error_step": "payment_authentication" if failed else None,
        "error_reason": "incorrect_otp" if failed else None,
        "acquirer_data": {"rrn": None if failed else "322206890934"},
        "created_at": created_at if created_at is not None else now(),
    }


def rzp_refund(*, payment_id: str, amount: int, currency: str = "INR", status: str = "processed",
               refund_id: str | None = None, notes: dict[str, str] | None = None,
               created_at: int | None = None) -> JSON:
    """A refund entity (`pending` | `processed` | `failed`), as `GET /v1/refunds` and refund.* webhooks carry it."""
    return {
        "id": refund_id or rzp_id("rfnd"), "entity": "refund", "amount": amount, "currency": currency,
        "payment_id": payment_id, "notes": _notes(notes), "receipt": None, "acquirer_data": {"arn": None},
        "created_at": created_at if created_at is not None else now(), "batch_id": None, "status": status,
        "speed_processed": "normal", "speed_requested": "normal",
    }


def rzp_dispute(*, payment_id: str, amount: int, currency: str = "INR", status: str = "open",
                phase: str = "chargeback", amount_deducted: int | None = None, dispute_id: str | None = None,
                created_at: int | None = None) -> JSON:
    """A dispute entity (`open` | `under_review` | `won` | `lost` | `closed`); `amount_deducted` is 0 unless lost."""
    created = created_at if created_at is not None else now()
    deducted = amount_deducted if amount_deducted is not None else (amount if status == "lost" else 0)
    return {
        "id": dispute_id or rzp_id("disp"), "entity": "dispute", "payment_id": payment_id, "amount": amount,
        "currency": currency, "amount_deducted": deducted, "reason_code": "chargeback",
        "reason_description": "The customer has disputed the payment", "respond_by": created + 7 * 86_400,
        "status": status, "phase": phase, "created_at": created,
        "evidence": {"amount": amount, "summary": None, "shipping_proof": None, "billing_proof": None,
                     "cancellation_proof": None, "customer_communication": None, "proof_of_service": None,
                     "explanation_letter": None, "refund_confirmation": None, "access_activity_log": None,
                     "refund_cancellation_policy": None, "term_and_conditions": None, "others": None,
                     "submitted_at": None},
    }


def rzp_event(event: str, account_id: str, *, payment: JSON | None = None, refund: JSON | None = None,
              dispute: JSON | None = None, created_at: int | None = None) -> JSON:
    """A webhook body: top-level `account_id` (acc_...) names the Razorpay account the event belongs to."""
    payload: JSON = {}
    for name, entity in (("refund", refund), ("payment", payment), ("dispute", dispute)):
        if entity is not None:
            payload[name] = {"entity": copy.deepcopy(entity)}
    return {"entity": "event", "account_id": account_id, "event": event, "contains": list(payload),
            "payload": payload, "created_at": created_at if created_at is not None else now()}


def rzp_signature(body: bytes, webhook_secret: str) -> str:
    """`X-Razorpay-Signature`: hex HMAC-SHA256 of the raw body, keyed with that webhook's secret."""
    return hmac.new(webhook_secret.encode(), body, hashlib.sha256).hexdigest()


def rzp_webhook_request(event: JSON, webhook_secret: str, event_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    """The raw body and headers of one delivery. A redelivery reuses `event_id` (X-Razorpay-Event-Id)."""
    body = json.dumps(event, separators=(",", ":")).encode()
    return body, {"content-type": "application/json", "x-razorpay-signature": rzp_signature(body, webhook_secret),
                  "x-razorpay-event-id": event_id or _rand(14)}


# ---- Stripe ---------------------------------------------------------------------------------------------

def stripe_payment_intent(*, amount: int, currency: str = "inr", status: str = "succeeded",
                          metadata: dict[str, str] | None = None, pi_id: str | None = None,
                          created: int | None = None, latest_charge: str | None = None) -> JSON:
    """A PaymentIntent (`requires_payment_method` … `succeeded` | `canceled`); amounts in minor units."""
    pi = pi_id or stripe_id("pi")
    return {
        "id": pi, "object": "payment_intent", "amount": amount, "amount_capturable": 0,
        "amount_received": amount if status == "succeeded" else 0, "application": None,
        "application_fee_amount": None, "canceled_at": None, "cancellation_reason": None,
        "capture_method": "automatic_async", "client_secret": f"{pi}_secret_{_rand(25)}",
        "confirmation_method": "automatic", "created": created if created is not None else now(),
        "currency": currency, "customer": None, "description": None, "last_payment_error": None,
        "latest_charge": latest_charge or (stripe_id("ch") if status == "succeeded" else None),
        "livemode": False, "metadata": dict(metadata or {}), "next_action": None, "on_behalf_of": None,
        "payment_method": stripe_id("pm"), "payment_method_types": ["card"], "receipt_email": None,
        "review": None, "setup_future_usage": None, "shipping": None, "statement_descriptor": None,
        "status": status, "transfer_data": None, "transfer_group": None,
    }


def stripe_refund(*, payment_intent: JSON, amount: int | None = None, status: str = "succeeded",
                  failure_reason: str | None = None, re_id: str | None = None, created: int | None = None,
                  metadata: dict[str, str] | None = None) -> JSON:
    """A Refund (`pending` | `requires_action` | `succeeded` | `failed` | `canceled`) of `payment_intent`."""
    failed = status == "failed"
    return {
        "id": re_id or stripe_id("re"), "object": "refund",
        "amount": payment_intent["amount"] if amount is None else amount,
        "balance_transaction": stripe_id("txn"), "charge": payment_intent["latest_charge"],
        "created": created if created is not None else now(), "currency": payment_intent["currency"],
        "destination_details": None, "metadata": dict(metadata or {}), "payment_intent": payment_intent["id"],
        "reason": None, "receipt_number": None, "source_transfer_reversal": None, "status": status,
        "transfer_reversal": None, "failure_balance_transaction": stripe_id("txn") if failed else None,
        "failure_reason": (failure_reason or "expired_or_canceled_card") if failed else None,
    }


def stripe_dispute(*, payment_intent: JSON, status: str = "needs_response", reason: str = "fraudulent",
                   dp_id: str | None = None, created: int | None = None) -> JSON:
    """A Dispute (`warning_needs_response` … `needs_response` | `under_review` | `won` | `lost` | `prevented`)."""
    at = created if created is not None else now()
    return {
        "id": dp_id or stripe_id("dp"), "object": "dispute", "amount": payment_intent["amount"],
        "balance_transactions": [], "charge": payment_intent["latest_charge"], "created": at,
        "currency": payment_intent["currency"], "evidence": {},
        "evidence_details": {"due_by": at + 7 * 86_400, "has_evidence": False, "past_due": False,
                             "submission_count": 0},
        "is_charge_refundable": False, "livemode": False, "metadata": {},
        "payment_intent": payment_intent["id"], "reason": reason, "status": status,
    }


def stripe_event(event_type: str, obj: JSON, *, account: str | None = None, event_id: str | None = None,
                 created: int | None = None, previous_attributes: JSON | None = None,
                 api_version: str = STRIPE_API_VERSION) -> JSON:
    """An Event. `account` (acct_...) is present only on events of a connected account."""
    data: JSON = {"object": copy.deepcopy(obj)}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    event: JSON = {"id": event_id or stripe_id("evt"), "object": "event"}
    if account is not None:
        event["account"] = account
    event.update({"api_version": api_version, "created": created if created is not None else now(), "data": data,
                  "livemode": False, "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
                  "type": event_type})
    return event


def refund_failed_events(refund: JSON, *, account: str | None = None, created: int | None = None) -> list[JSON]:
    """What a succeeded refund that later fails emits: `refund.updated`, `refund.failed`, `charge.refund.updated`.

    Three events, three event ids, one fact: why the pipeline must dedupe on (refund id, status), not event id.
    """
    failed = {**refund, "status": "failed", "failure_reason": refund.get("failure_reason") or "lost_or_stolen_card",
              "failure_balance_transaction": refund.get("failure_balance_transaction") or stripe_id("txn")}
    before = {"status": refund["status"], "failure_reason": None, "failure_balance_transaction": None}
    return [stripe_event(t, failed, account=account, created=created, previous_attributes=before)
            for t in ("refund.updated", "refund.failed", "charge.refund.updated")]


def stripe_signature_header(body: bytes, webhook_secret: str, timestamp: int | None = None) -> str:
    """`Stripe-Signature`: `t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">` with the endpoint's whsec_ secret."""
    t = timestamp if timestamp is not None else now()
    mac = hmac.new(webhook_secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def stripe_webhook_request(event: JSON, webhook_secret: str,
                           timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    """The raw body and headers of one delivery to the endpoint whose signing secret is `webhook_secret`."""
    body = json.dumps(event, indent=2).encode()  # Stripe pretty-prints webhook bodies
    return body, {"content-type": "application/json; charset=utf-8",
                  "stripe-signature": stripe_signature_header(body, webhook_secret, timestamp)}
