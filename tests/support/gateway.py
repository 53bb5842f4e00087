"""Signed gateway webhooks for tests, made with the gateways' own SDK helpers, and an ingress served over
real HTTP (uvicorn on a free loopback port)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import razorpay
import stripe
import uvicorn
from starlette.applications import Starlette

from config import Settings
from events import inbox
from events.envelope import Envelope, envelope_for
from events.ids import new_id
from events.payments import GatewayEvidence, PaymentFact
from events.publish import Publisher
from gateways.accounts import Account, AccountStore, Credentials
from gateways.directory import AccountDirectory
from gateways.secretbox import FernetBox
from handlers.routes import ROUTER
from jobqueue.arq_redis import ArqQueue, connect
from store import Database
from tests.support.factories import Tenant
from tests.support.redis_server import free_port
from workers.apply import apply_event
from workers.deps import Deps
from workers.policy import Backoff

RAZORPAY_SECRET = "rzp-webhook-secret-test"
STRIPE_SECRET = "whsec_test_4eC39HqLyjWDarjtT1zdp7dc"
STRIPE_CONNECT_SECRET = "whsec_test_connect_9fK2mQ7pLw3Zr8Tx"
RZP_ACCOUNT = "acc_BFQ7uQEaa7j2z7"  # the Razorpay account the sample webhooks name
STRIPE_ACCOUNT = "acct_1StudioTest000001"  # a studio's Stripe Connect account
# A throwaway Fernet key (url-safe base64 of 32 bytes) for the tests' gateway_accounts rows.
TEST_ENCRYPTION_KEY = base64.urlsafe_b64encode(b"studiovault-test-encryption-key!").decode()


# ---- gateway accounts -----------------------------------------------------------------------------------

def account_store(db: Database, key: str = TEST_ENCRYPTION_KEY) -> AccountStore:
    return AccountStore(db, FernetBox([key]))


def directory(db: Database, ttl_s: float = 5.0) -> AccountDirectory:
    return AccountDirectory(account_store(db), ttl_s=ttl_s)


async def connect_account(db: Database, org_id: str | None, *, gateway: str = "razorpay", ref: str = RZP_ACCOUNT,
                          secrets: tuple[str, ...] = (RAZORPAY_SECRET,), connect_secrets: tuple[str, ...] = (),
                          api_key_id: str | None = None, api_key_secret: str | None = None) -> Account:
    """A connected account (org_id None: the platform's), as `studiovault accounts connect` makes it."""
    credentials = Credentials(tuple(secrets), tuple(connect_secrets), api_key_id, api_key_secret)
    return await account_store(db).connect(gateway=gateway, account_ref=ref, org_id=org_id,  # type: ignore[arg-type]
                                           credentials=credentials, now=datetime.now(UTC), account_id=new_id("gwa"))


def signed_by(tenant: Tenant | None, account: str = RZP_ACCOUNT) -> dict[str, Any]:
    """The signing-account fields of a fact: `tenant`'s studio account, or (None) the platform's."""
    if tenant is None:
        return {"account_id": account, "account_role": "platform", "account_org_id": None}
    return {"account_id": account, "account_role": "studio", "account_org_id": tenant.org_id}


# ---- Razorpay -------------------------------------------------------------------------------------------

def _rzp_payment(payment_id: str, amount: int, invoice_id: str | None, currency: str = "INR", *,
                 status: str = "captured", notes: dict[str, Any] | None = None) -> dict[str, Any]:
    note = ({"invoice_id": invoice_id} if invoice_id else {}) | (notes or {})
    return {"id": payment_id, "entity": "payment", "amount": amount, "currency": currency, "status": status,
            "order_id": "order_LtG2PqS6vKNyXq", "international": False, "method": "upi", "amount_refunded": 0,
            "captured": status == "captured", "vpa": "gaurav.kumar@exampleupi", "email": "gaurav.kumar@example.com",
            "contact": "+919000090000", "notes": note or [], "error_code": None, "error_reason": None,
            "created_at": 1717000000}


def razorpay_event(event: str, payload: dict[str, Any], account_id: str = RZP_ACCOUNT) -> dict[str, Any]:
    return {"entity": "event", "account_id": account_id, "event": event,
            "contains": list(payload), "payload": payload, "created_at": 1717000005}


def rzp_captured(invoice_id: str | None, amount: int, payment_id: str = "pay_LtG2vHxq3P1Ykz", currency: str = "INR",
                 notes: dict[str, Any] | None = None, *, account_id: str = RZP_ACCOUNT) -> dict[str, Any]:
    return razorpay_event("payment.captured", {
        "payment": {"entity": _rzp_payment(payment_id, amount, invoice_id, currency, notes=notes)}}, account_id)


def rzp_failed(invoice_id: str, amount: int, payment_id: str) -> dict[str, Any]:
    payment = _rzp_payment(payment_id, amount, invoice_id, status="failed") | {
        "error_code": "BAD_REQUEST_ERROR", "error_reason": "payment_cancelled"}
    return razorpay_event("payment.failed", {"payment": {"entity": payment}})


def rzp_refund(invoice_id: str, payment_id: str, refund_id: str, amount: int, *, captured: bool = True,
               refund_notes: dict[str, Any] | None = None) -> dict[str, Any]:
    payment = _rzp_payment(payment_id, 999_999, invoice_id) | {"captured": captured}
    refund = {"id": refund_id, "entity": "refund", "amount": amount, "currency": "INR", "payment_id": payment_id,
              "notes": refund_notes or [], "status": "processed", "created_at": 1717100000}
    return razorpay_event("refund.processed", {"refund": {"entity": refund}, "payment": {"entity": payment}})


def rzp_dispute(outcome: str, invoice_id: str, payment_id: str, dispute_id: str, amount: int, *,
                deducted: int = 0) -> dict[str, Any]:
    """outcome: created | won | lost."""
    dispute = {"id": dispute_id, "entity": "dispute", "payment_id": payment_id, "amount": amount, "currency": "INR",
               "amount_deducted": deducted, "reason_code": "chargeback", "status": "open" if outcome == "created"
               else outcome, "phase": "chargeback", "created_at": 1717200000}
    return razorpay_event(f"payment.dispute.{outcome}", {
        "payment": {"entity": _rzp_payment(payment_id, amount, invoice_id)}, "dispute": {"entity": dispute}})


def sign_razorpay(doc: dict[str, Any] | bytes, secret: str = RAZORPAY_SECRET,
                  event_id: str | None = None) -> tuple[bytes, dict[str, str]]:
    """The body and headers Razorpay would send; the signature is cross-checked with the razorpay SDK."""
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()  # the SDK has no signing helper
    assert razorpay.Utility().verify_webhook_signature(body.decode(), signature, secret)
    return body, {"content-type": "application/json", "x-razorpay-signature": signature,
                  "x-razorpay-event-id": event_id or f"Lt{new_id('evt')[-12:]}"}


# ---- Stripe ---------------------------------------------------------------------------------------------

def stripe_event(kind: str, obj: dict[str, Any], event_id: str | None = None,
                 account: str | None = STRIPE_ACCOUNT) -> dict[str, Any]:
    """An Event; `account` (a connected account's, by default) is absent on the platform's own events."""
    event = {"id": event_id or f"evt_3PXa{new_id('evt')[-12:]}", "object": "event", "api_version": "2024-06-20",
             "created": 1717000005, "livemode": False, "pending_webhooks": 1, "type": kind, "data": {"object": obj}}
    if account is not None:
        event["account"] = account
    return event


def stripe_succeeded(invoice_id: str | None, amount: int, pi: str = "pi_3PXa1b2C3d4E5f6G0",
                     currency: str = "inr") -> dict[str, Any]:
    return stripe_event("payment_intent.succeeded", {
        "id": pi, "object": "payment_intent", "amount": amount, "amount_received": amount, "currency": currency,
        "status": "succeeded", "latest_charge": "ch_3PXa1b2C3d4E5f6G0",
        "metadata": {"invoice_id": invoice_id} if invoice_id else {}, "last_payment_error": None})


def stripe_refund(pi: str, refund_id: str, amount: int, status: str = "succeeded") -> dict[str, Any]:
    return stripe_event("refund.created", {
        "id": refund_id, "object": "refund", "amount": amount, "currency": "inr", "charge": "ch_3PXa1b2C3d4E5f6G0",
        "payment_intent": pi, "status": status, "reason": "requested_by_customer", "metadata": {}})


def stripe_dispute(kind: str, pi: str, dispute_id: str, amount: int, status: str = "needs_response") -> dict[str, Any]:
    return stripe_event(kind, {
        "id": dispute_id, "object": "dispute", "amount": amount, "currency": "inr", "charge": "ch_3PXa1b2C3d4E5f6G0",
        "payment_intent": pi, "reason": "fraudulent", "status": status, "metadata": {}})


def sign_stripe(doc: dict[str, Any] | bytes, secret: str = STRIPE_SECRET,
                timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    """Body and `Stripe-Signature` made by stripe's own `WebhookSignature.generate_signature_header`."""
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret,
                                                               timestamp=timestamp or int(time.time()))
    return body, {"content-type": "application/json", "stripe-signature": header}


# ---- serving the ingress --------------------------------------------------------------------------------

@contextlib.asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[str]:
    """Run `app` under uvicorn on a free loopback port (lifespan included); yield its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, ws="none",
                                           lifespan="on", access_log=False))
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


# ---- applying payment facts through the real unit of work -----------------------------------------------

@dataclass
class Applier:
    """The production `apply_event` job on a real database and a real Redis queue, called directly (one
    delivery at a time, with a fixed clock) instead of by an arq Worker: order and duplicates are ours."""

    db: Database
    deps: Deps

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, db: Database, redis_url: str, now: datetime) -> AsyncIterator[Applier]:
        settings = Settings.from_fields(database_url="sqlite:///unused.db", redis_url=redis_url,
                                        queue_name="test:payments", max_attempts=3)
        redis = await connect(redis_url, settings.queue.queue_name)
        queue = ArqQueue(redis, settings.queue.queue_name)
        clock = lambda: now  # noqa: E731
        deps = Deps(settings=settings, db=db, queue=queue, publisher=Publisher(db, queue, clock), router=ROUTER,
                    clock=clock, backoff=Backoff(0.01, 0.05))
        try:
            yield cls(db, deps)
        finally:
            await redis.aclose()

    async def deliver(self, event: PaymentFact, tenant: Tenant, gateway_event_id: str | None = None) -> str:
        """Publish as the ingress would (the fact's own dedupe key, whichever gateway event brings it:
        `gateway_event_id` makes it another delivery) and apply the envelope recorded under that key."""
        if gateway_event_id is not None:
            evidence = event.evidence.model_copy(update={"gateway_event_id": gateway_event_id})
            event = event.model_copy(update={"evidence": evidence})
        env = envelope_for(event, org_id=tenant.org_id, branch_id=tenant.branch_id, dedupe_key=event.dedupe_key())
        published = await self.deps.publisher.publish(env)
        row = await inbox.get(self.db, published.event_id)
        assert row is not None
        return await self.apply(row["payload_json"])

    async def apply(self, envelope_json: str) -> str:
        event_id = Envelope.model_validate_json(envelope_json).event_id
        return str(await apply_event({"deps": self.deps, "job_try": 1, "job_id": event_id}, envelope_json))


def evidence(gateway_event_id: str, kind: str = "payment.captured") -> GatewayEvidence:
    return GatewayEvidence(gateway_event_id=gateway_event_id, gateway_event_type=kind, body_sha256="0" * 64,
                           headers={}, received_at=datetime(2026, 9, 21, tzinfo=UTC))
