"""The webhook ingress over real HTTP: signatures made by the gateways' SDK helpers, each verified with the
signing account's own secrets (Razorpay: the account's endpoint; Stripe: the platform's Connect endpoint),
refusals that write nothing, one dedupe key per fact, evidence kept, unhandled events recorded as ignored."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from gateways.accounts import Account
from tests.support.factories import Tenant, make_tenant
from tests.support.gateway import (
    RAZORPAY_SECRET,
    RZP_ACCOUNT,
    STRIPE_ACCOUNT,
    STRIPE_CONNECT_SECRET,
    STRIPE_SECRET,
    connect_account,
    rzp_captured,
    rzp_refund,
    serve,
    sign_razorpay,
    sign_stripe,
    stripe_event,
    stripe_refund,
    stripe_succeeded,
)
from tests.support.pipeline import Pipeline

OLD_RAZORPAY_SECRET = "rzp-webhook-secret-before-rotation"


@dataclass
class Ingress:
    http: httpx.AsyncClient
    pipeline: Pipeline
    tenant: Tenant
    razorpay: Account

    @property
    def rzp(self) -> str:
        """The tenant's Razorpay account's webhook path."""
        return f"/webhooks/razorpay/{self.razorpay.endpoint_key}"

    async def inbox(self) -> list[dict[str, Any]]:
        return await self.pipeline.db.query("SELECT * FROM event_inbox ORDER BY created_at")

    async def assert_nothing_written(self) -> None:
        assert await self.inbox() == []
        assert await self.pipeline.queue.depth() == 0


STRIPE_CONNECT = "/webhooks/stripe/connect"


@pytest.fixture
async def ingress(pipeline: Pipeline) -> AsyncIterator[Ingress]:
    """One studio with its Razorpay account and its Stripe Connect account, and the Stripe platform."""
    tenant = await make_tenant(pipeline.db)
    rzp = await connect_account(pipeline.db, tenant.org_id, secrets=(RAZORPAY_SECRET, OLD_RAZORPAY_SECRET))
    await connect_account(pipeline.db, None, gateway="stripe", ref="acct_1PlatformTest0001", secrets=(STRIPE_SECRET,),
                          connect_secrets=(STRIPE_CONNECT_SECRET,))
    await connect_account(pipeline.db, tenant.org_id, gateway="stripe", ref=STRIPE_ACCOUNT, secrets=())
    app = pipeline.ingress_app(max_body_bytes=16 * 1024)
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        yield Ingress(http, pipeline, tenant, rzp)


async def test_a_razorpay_capture_signed_as_the_sdk_verifies_is_accepted_with_its_evidence(ingress: Ingress) -> None:
    body, headers = sign_razorpay(rzp_captured(ingress.tenant.invoice_id, 118000), event_id="LtEvt0001")
    response = await ingress.http.post(ingress.rzp, content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "accepted"
    (row,) = await ingress.inbox()
    assert (row["type"], row["status"]) == ("payment.captured", "pending")
    assert row["dedupe_key"] == f"razorpay:{RZP_ACCOUNT}:capture:pay_LtG2vHxq3P1Ykz"
    assert (row["org_id"], row["branch_id"]) == (ingress.tenant.org_id, ingress.tenant.branch_id)
    payload = json.loads(row["payload_json"])["payload"]
    assert (payload["account_id"], payload["account_role"], payload["account_org_id"]) == (
        RZP_ACCOUNT, "studio", ingress.tenant.org_id)
    assert payload["amount_minor"] == 118000
    assert payload["currency"] == "INR"
    assert payload["invoice_id"] == ingress.tenant.invoice_id
    evidence = payload["evidence"]
    assert evidence["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert evidence["headers"]["x-razorpay-event-id"] == "LtEvt0001"
    assert evidence["headers"]["x-razorpay-signature"] == headers["x-razorpay-signature"]
    assert evidence["received_at"]
    assert await ingress.pipeline.queue.depth() == 1


async def test_a_delivery_signed_with_the_previous_secret_is_accepted_during_rotation(ingress: Ingress) -> None:
    body, headers = sign_razorpay(rzp_captured(ingress.tenant.invoice_id, 500), secret=OLD_RAZORPAY_SECRET)
    response = await ingress.http.post(ingress.rzp, content=body, headers=headers)
    assert response.status_code == 200


async def test_a_stripe_payment_intent_signed_by_the_stripe_sdk_is_accepted(ingress: Ingress) -> None:
    doc = stripe_succeeded(ingress.tenant.invoice_id, 118000)
    body, headers = sign_stripe(doc, secret=STRIPE_CONNECT_SECRET)
    response = await ingress.http.post(STRIPE_CONNECT, content=body, headers=headers)
    assert response.status_code == 200, response.text
    (row,) = await ingress.inbox()
    assert row["dedupe_key"] == f"stripe:{STRIPE_ACCOUNT}:capture:pi_3PXa1b2C3d4E5f6G0"
    assert row["org_id"] == ingress.tenant.org_id  # the connected account's org, mapped from `account`
    payload = json.loads(row["payload_json"])["payload"]
    assert (payload["gateway"], payload["payment_id"], payload["currency"]) == ("stripe", "pi_3PXa1b2C3d4E5f6G0", "INR")


def _tamper(body: bytes) -> bytes:
    return body.replace(b"118000", b"118001")


@pytest.mark.parametrize(("case", "status", "error"), [
    ("altered_body", 401, "invalid_signature"),
    ("wrong_secret", 401, "invalid_signature"),
    ("missing_signature", 401, "missing_signature"),
    ("missing_event_id", 400, "missing_header"),
])
async def test_a_bad_razorpay_delivery_is_refused_and_writes_nothing(
    ingress: Ingress, case: str, status: int, error: str
) -> None:
    doc = rzp_captured(ingress.tenant.invoice_id, 118000)
    body, headers = sign_razorpay(doc, secret="not-our-secret" if case == "wrong_secret" else RAZORPAY_SECRET)
    if case == "altered_body":
        body = _tamper(body)
    if case == "missing_signature":
        del headers["x-razorpay-signature"]
    if case == "missing_event_id":
        del headers["x-razorpay-event-id"]
    response = await ingress.http.post(ingress.rzp, content=body, headers=headers)
    assert response.status_code == status
    assert response.json()["error"] == error
    await ingress.assert_nothing_written()


@pytest.mark.parametrize(("case", "status", "error"), [
    ("altered_body", 401, "invalid_signature"),
    ("wrong_secret", 401, "invalid_signature"),
    ("platform_secret_on_connect", 401, "invalid_signature"),
    ("stale_timestamp", 401, "stale_timestamp"),
    ("missing_signature", 401, "missing_signature"),
    ("malformed_signature", 401, "malformed_signature"),
])
async def test_a_bad_stripe_delivery_is_refused_and_writes_nothing(
    ingress: Ingress, case: str, status: int, error: str
) -> None:
    doc = stripe_succeeded(ingress.tenant.invoice_id, 118000)
    timestamp = int(time.time()) - 301 if case == "stale_timestamp" else None
    secret = {"wrong_secret": "whsec_other", "platform_secret_on_connect": STRIPE_SECRET}.get(case,
                                                                                             STRIPE_CONNECT_SECRET)
    body, headers = sign_stripe(doc, secret=secret, timestamp=timestamp)
    if case == "altered_body":
        body = _tamper(body)
    if case == "missing_signature":
        del headers["stripe-signature"]
    if case == "malformed_signature":
        headers["stripe-signature"] = "v1=abc"
    response = await ingress.http.post(STRIPE_CONNECT, content=body, headers=headers)
    assert response.status_code == status
    assert response.json()["error"] == error
    await ingress.assert_nothing_written()


async def test_a_redelivered_razorpay_event_is_answered_2xx_and_recorded_once(ingress: Ingress) -> None:
    body, headers = sign_razorpay(rzp_captured(ingress.tenant.invoice_id, 118000), event_id="LtRedeliver1")
    first = await ingress.http.post(ingress.rzp, content=body, headers=headers)
    again = await ingress.http.post(ingress.rzp, content=body, headers=headers)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == {"status": "duplicate", "event_id": first.json()["event_id"]}
    assert len(await ingress.inbox()) == 1
    assert await ingress.pipeline.queue.depth() == 1


@pytest.mark.parametrize(("gateway", "doc"), [
    ("razorpay", {"entity": "event", "account_id": RZP_ACCOUNT, "event": "order.paid", "payload": {}, "created_at": 1}),
    ("razorpay", {"entity": "event", "account_id": RZP_ACCOUNT, "event": "payment.dispute.under_review",
                  "payload": {}}),
    ("stripe", stripe_event("customer.created", {"id": "cus_1"})),
    ("stripe", stripe_event("charge.refunded", {"id": "ch_1", "amount_refunded": 100})),
    ("stripe", stripe_refund("pi_3PXa1b2C3d4E5f6G0", "re_pending1", 100, status="pending")),
])
async def test_an_event_we_do_not_apply_is_acknowledged_and_recorded_as_ignored(
    ingress: Ingress, gateway: str, doc: dict[str, Any]
) -> None:
    body, headers = sign_razorpay(doc) if gateway == "razorpay" else sign_stripe(doc, secret=STRIPE_CONNECT_SECRET)
    response = await ingress.http.post(ingress.rzp if gateway == "razorpay" else STRIPE_CONNECT, content=body,
                                       headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ignored"
    (row,) = await ingress.inbox()
    assert (row["status"], row["type"]) == ("ignored", "payment.gateway_event_ignored")
    assert row["org_id"] == ingress.tenant.org_id  # filed under the signing account's org
    assert row["last_error"]  # the reason it was not applied
    assert json.loads(row["payload_json"])["payload"]["evidence"]["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert await ingress.pipeline.queue.depth() == 0


@pytest.mark.parametrize(("body", "status", "error"), [
    (b"{not json", 422, "invalid_json"),
    (b"[1, 2]", 422, "invalid_json"),
    (json.dumps({"entity": "event", "payload": {}}).encode(), 422, "unknown_event_type"),
    (json.dumps({"entity": "event", "event": 42}).encode(), 422, "unknown_event_type"),
    (json.dumps({"entity": "event", "event": "payment.captured", "payload": {}}).encode(), 422, "missing_field"),
    (json.dumps(rzp_captured(None, 100, account_id="acc_SomeoneElse00001")).encode(), 422, "account_mismatch"),
    (json.dumps(rzp_captured("inv_01a2101d-abe5-750c-a3eb-7a47c0c52bed", 0)).encode(), 422, "zero_amount"),
    (json.dumps(rzp_captured(None, 100)).encode(), 422, "missing_field"),
    (json.dumps(rzp_captured("inv_not-a-uuid", 100)).encode(), 422, "invalid_field"),
])
async def test_signed_but_malformed_bodies_get_a_clear_4xx_and_write_nothing(
    ingress: Ingress, body: bytes, status: int, error: str
) -> None:
    signed, headers = sign_razorpay(body)
    response = await ingress.http.post(ingress.rzp, content=signed, headers=headers)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert response.json()["detail"]
    await ingress.assert_nothing_written()


async def test_a_missing_amount_names_the_field(ingress: Ingress) -> None:
    doc = rzp_captured(ingress.tenant.invoice_id, 100)
    del doc["payload"]["payment"]["entity"]["amount"]
    body, headers = sign_razorpay(doc)
    response = await ingress.http.post(ingress.rzp, content=body, headers=headers)
    assert response.status_code == 422
    assert response.json()["field"] == "payload.payment.entity.amount"
    await ingress.assert_nothing_written()


async def test_a_body_over_the_limit_is_refused_with_413(ingress: Ingress) -> None:
    doc = rzp_captured(ingress.tenant.invoice_id, 100, notes={"pad": "x" * 20_000})
    body, headers = sign_razorpay(doc)
    response = await ingress.http.post(ingress.rzp, content=body, headers=headers)
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"
    await ingress.assert_nothing_written()


async def test_a_stripe_refund_for_a_payment_not_yet_recorded_is_refused_for_retry(ingress: Ingress) -> None:
    """A Stripe refund names no invoice; until its payment is recorded we cannot route it: 503, retry."""
    body, headers = sign_stripe(stripe_refund("pi_unknown123", "re_1", 100), secret=STRIPE_CONNECT_SECRET)
    response = await ingress.http.post(STRIPE_CONNECT, content=body, headers=headers)
    assert response.status_code == 503
    assert response.json()["error"] == "payment_not_yet_known"
    assert response.headers["retry-after"] == "60"
    await ingress.assert_nothing_written()


async def test_an_unknown_invoice_is_accepted_for_the_handler_to_dead_letter(ingress: Ingress) -> None:
    from events.ids import new_id  # noqa: PLC0415

    body, headers = sign_razorpay(rzp_captured(new_id("inv"), 100))
    response = await ingress.http.post(ingress.rzp, content=body, headers=headers)
    assert response.status_code == 200
    (row,) = await ingress.inbox()
    assert (row["org_id"], row["branch_id"]) == (ingress.tenant.org_id, None)  # the account's org


async def test_a_razorpay_refund_of_an_uncaptured_payment_is_ignored(ingress: Ingress) -> None:
    doc = rzp_refund(ingress.tenant.invoice_id, "pay_A1", "rfnd_A1", 100, captured=False)
    body, headers = sign_razorpay(doc)
    response = await ingress.http.post(ingress.rzp, content=body, headers=headers)
    assert response.status_code == 200
    assert response.json()["status"] == "ignored"
    assert await ingress.pipeline.queue.depth() == 0


async def test_a_razorpay_refund_with_its_own_notes_still_finds_the_invoice_in_the_payments_notes(
    ingress: Ingress,
) -> None:
    """Razorpay's own sample refund carries notes {"comment": ...}; the invoice id is in the payment's notes."""
    doc = rzp_refund(ingress.tenant.invoice_id, "pay_A1", "rfnd_A1", 100,
                     refund_notes={"comment": "Customer Notes for Webhooks."})
    body, headers = sign_razorpay(doc)
    response = await ingress.http.post(ingress.rzp, content=body, headers=headers)
    assert response.status_code == 200, response.text
    (row,) = await ingress.inbox()
    assert row["type"] == "payment.refund_processed"
    assert json.loads(row["payload_json"])["payload"]["invoice_id"] == ingress.tenant.invoice_id


async def test_a_signed_delivery_with_an_over_long_event_id_gets_422_not_500(ingress: Ingress) -> None:
    body, headers = sign_razorpay(rzp_captured(ingress.tenant.invoice_id, 118000), event_id="E" * 300)
    response = await ingress.http.post(ingress.rzp, content=body, headers=headers)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_field"
    await ingress.assert_nothing_written()


async def test_a_blank_secret_in_the_list_never_verifies_a_forgery(pipeline: Pipeline) -> None:
    """An HMAC keyed with "" is computable by anyone: a blank entry must not become a valid key."""
    tenant = await make_tenant(pipeline.db)
    account = await connect_account(pipeline.db, tenant.org_id, secrets=(RAZORPAY_SECRET, "  "))
    async with serve(pipeline.ingress_app()) as url, httpx.AsyncClient(base_url=url) as http:
        body, headers = sign_razorpay(rzp_captured("inv_x", 1), secret="  ")
        response = await http.post(f"/webhooks/razorpay/{account.endpoint_key}", content=body, headers=headers)
    assert response.status_code == 401
    assert await pipeline.db.query("SELECT id FROM event_inbox") == []


async def test_health_and_readiness(ingress: Ingress) -> None:
    assert (await ingress.http.get("/healthz")).json() == {"status": "ok"}
    ready = await ingress.http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "redis": "ok"}


async def test_an_account_without_a_webhook_secret_answers_503_and_an_unknown_endpoint_401(
    pipeline: Pipeline,
) -> None:
    tenant = await make_tenant(pipeline.db)
    account = await connect_account(pipeline.db, tenant.org_id, secrets=())
    async with serve(pipeline.ingress_app()) as url, httpx.AsyncClient(base_url=url) as http:
        body, headers = sign_razorpay(rzp_captured("inv_x", 1))
        response = await http.post(f"/webhooks/razorpay/{account.endpoint_key}", content=body, headers=headers)
        assert response.status_code == 503
        assert response.json()["error"] == "not_configured"
        for path in ("/webhooks/razorpay/not-a-key", "/webhooks/razorpay", "/webhooks/stripe"):
            unknown = await http.post(path, content=body, headers=headers)  # no platform account connected
            assert (unknown.status_code, unknown.json()["error"]) == (401, "unknown_account"), path
    assert await pipeline.db.query("SELECT id FROM event_inbox") == []
