"""The pure payment planner and the gateway mappers, table-driven, no database."""

from __future__ import annotations

import hashlib
import hmac
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from events.envelope import envelope_for
from events.ids import new_id, validate_id
from events.mapping import razorpay, stripe
from events.mapping.fields import Fact, Ignore, MappingError
from events.payments import DisputeLost, PaymentCaptured, PaymentFact
from handlers.audit import system_user_id
from handlers.base import Rejected
from handlers.payments.plan import (
    InvoiceRow,
    ProjectRow,
    Snapshot,
    derive_invoice_status,
    net_received,
    plan_payment,
    to_major,
    to_minor,
)
from ingress.signatures import SignatureError, verify_razorpay, verify_stripe
from tests.support.gateway import evidence, rzp_dispute, rzp_failed, stripe_dispute

DAY = 86_400_000


@pytest.mark.parametrize(("total", "net", "due", "now", "expected"), [
    (100_000, 100_000, None, 0, "paid"),
    (100_000, 120_000, None, 0, "paid"),
    (100_000, 99_999, 10 * DAY, 1 * DAY, "issued"),
    (100_000, 99_999, 1 * DAY, 2 * DAY, "overdue"),
    (100_000, -5_000, None, 2 * DAY, "issued"),
    (100_000, 0, 1 * DAY, 1 * DAY, "issued"),  # due at this very moment: not yet overdue
])
def test_invoice_status_derivation(total: int, net: int, due: int | None, now: int, expected: str) -> None:
    assert derive_invoice_status(total, net, due, now) == expected


@pytest.mark.parametrize(("sums", "net"), [
    ({}, 0),
    ({"paid": 100_000, "failed": 50_000}, 100_000),
    ({"paid": 100_000, "refunded": 25_000, "disputed": 75_000}, 0),
])
def test_net_received_is_captures_minus_refunds_minus_lost_disputes(sums: dict[str, int], net: int) -> None:
    assert net_received(sums) == net


@pytest.mark.parametrize(("amount", "currency", "minor"), [
    (1180.0, "INR", 118000), (0.29, "INR", 29), (1234.57, "INR", 123457), (500.0, "JPY", 500),
])
def test_money_converts_between_real_and_minor_units_exactly(amount: float, currency: str, minor: int) -> None:
    assert to_minor(amount, currency) == minor
    assert to_major(minor, currency) == amount


def test_the_system_user_id_is_deterministic_per_org_and_a_valid_id() -> None:
    org_a, org_b = new_id("org"), new_id("org")
    assert system_user_id(org_a) == system_user_id(org_a) != system_user_id(org_b)
    validate_id(system_user_id(org_a), "usr")


ORG, BRANCH, INVOICE = new_id("org"), new_id("brn"), new_id("inv")
PROJECT = ProjectRow(id=new_id("prj"), branch_id=BRANCH, status="inquiry", version=3, client_id=new_id("cli"),
                     client_branch_id=BRANCH, client_version=5)
NOW = datetime(2026, 9, 22, tzinfo=UTC)


def _invoice(**changes: Any) -> InvoiceRow:
    values: dict[str, Any] = {"id": INVOICE, "branch_id": BRANCH, "org_id": ORG, "currency": "INR",
                              "project_id": PROJECT.id, "invoice_type": "booking", "amount_total": 1000.0,
                              "status": "issued", "due_at": None, "version": 2}
    return InvoiceRow(**(values | changes))


SIGNER: dict[str, Any] = {"account_id": "acc_Studio0000001", "account_role": "studio", "account_org_id": ORG}


def _capture(**changes: Any) -> PaymentCaptured:
    values: dict[str, Any] = {"gateway": "razorpay", "invoice_id": INVOICE, "payment_id": "pay_1",
                              "amount_minor": 100_000, "currency": "INR", "evidence": evidence("e1"), **SIGNER}
    return PaymentCaptured(**(values | changes))


def _plan(event: PaymentFact, snap: Snapshot, org: str = ORG, branch: str = BRANCH) -> Any:
    env = envelope_for(event, org_id=org, branch_id=branch, dedupe_key="k")
    return plan_payment(event, snap, env, NOW)


@pytest.mark.parametrize("exists", [False, True])
def test_the_system_actor_is_inserted_only_when_the_snapshot_did_not_find_it(exists: bool) -> None:
    plan = _plan(_capture(), Snapshot(invoice=_invoice(project_id=None), system_user=exists))
    inserts = [s for s in plan.statements if s.sql.startswith("INSERT INTO users")]
    assert len(inserts) == (0 if exists else 1)
    audits = [s for s in plan.statements if s.sql.startswith("INSERT INTO audit_logs")]
    assert len(audits) == 1
    assert system_user_id(ORG) in audits[0].params  # written by the org's system actor either way


@pytest.mark.parametrize(("snap", "org", "reason"), [
    (Snapshot(invoice=None), ORG, "unknown_invoice"),
    (Snapshot(invoice=_invoice()), new_id("org"), "wrong_tenant"),
    (Snapshot(invoice=_invoice(branch_id=new_id("brn"))), ORG, "wrong_tenant"),
    (Snapshot(invoice=_invoice(), project=ProjectRow(**{**PROJECT.__dict__, "client_branch_id": new_id("brn")})),
     ORG, "wrong_tenant"),
    (Snapshot(invoice=_invoice(currency="USD")), ORG, "currency_mismatch"),
    (Snapshot(invoice=_invoice(org_id=new_id("org"))), ORG, "wrong_tenant"),  # the signer's org is not the invoice's
    (Snapshot(invoice=_invoice(invoice_type="overage")), ORG, "wrong_tenant"),  # overage: the platform's to collect
])
def test_permanent_problems_are_rejected_with_their_reason(snap: Snapshot, org: str, reason: str) -> None:
    with pytest.raises(Rejected) as caught:
        _plan(_capture(), snap, org=org)
    assert caught.value.reason == reason


@pytest.mark.parametrize(("signer", "invoice_type", "allowed"), [
    (SIGNER, "booking", True),
    ({**SIGNER, "account_org_id": new_id("org")}, "booking", False),
    ({**SIGNER, "account_role": "platform", "account_org_id": None}, "booking", False),
    ({**SIGNER, "account_role": "platform", "account_org_id": None}, "overage", True),
    (SIGNER, "overage", False),
])
def test_the_tenant_rule_follows_the_signing_account(signer: dict[str, Any], invoice_type: str,
                                                     allowed: bool) -> None:
    snap = Snapshot(invoice=_invoice(invoice_type=invoice_type, project_id=None))
    if allowed:
        assert _plan(_capture(**signer), snap).outcome == "applied"
    else:
        with pytest.raises(Rejected) as caught:
            _plan(_capture(**signer), snap)
        assert caught.value.reason == "wrong_tenant"


def test_an_object_already_in_the_ledger_plans_nothing_and_is_ignored() -> None:
    plan = _plan(_capture(), Snapshot(invoice=_invoice(), recorded={"capture": 100_000}))
    assert (plan.outcome, list(plan.statements), list(plan.follow_ups)) == ("ignored", [], [])


def test_a_capture_on_a_booking_invoice_plans_every_write_version_checked() -> None:
    plan = _plan(_capture(), Snapshot(invoice=_invoice(), project=PROJECT, invoice_sums={}, client_sums={}))
    sql = [s.sql for s in plan.statements]
    updates = [s for s in plan.statements if s.sql.startswith("UPDATE")]
    assert [u.sql.split()[1] for u in updates] == ["invoices", "clients", "projects"]
    assert all("version = version + 1" in u.sql for u in updates)
    assert sum("_assert" in q and "version" in q for q in sql) >= 4  # ledger + invoice + client + project
    assert ("paid", INVOICE, 2) in [u.params for u in updates]
    assert (1000.0, PROJECT.client_id, 5) in [u.params for u in updates]
    assert [f.type for f in plan.follow_ups] == ["notification.due"]


def test_a_lost_dispute_reopens_a_paid_invoice_and_does_not_activate() -> None:
    lost = DisputeLost(gateway="razorpay", invoice_id=INVOICE, payment_id="pay_1", dispute_id="disp_1",
                       amount_minor=40_000, currency="INR", evidence=evidence("e2"), **SIGNER)
    snap = Snapshot(invoice=_invoice(status="paid"), project=PROJECT, invoice_sums={"paid": 100_000},
                    client_sums={"paid": 150_000})
    plan = _plan(lost, snap)
    updates = {s.sql.split()[1]: s.params for s in plan.statements if s.sql.startswith("UPDATE")}
    assert updates == {"invoices": ("issued", INVOICE, 2), "clients": (1100.0, PROJECT.client_id, 5)}
    assert plan.follow_ups == []


# ---- gateway mapping ------------------------------------------------------------------------------------

INV = new_id("inv")


@pytest.mark.parametrize(("doc", "cls", "fields"), [
    (rzp_dispute("lost", INV, "pay_1", "disp_1", 50_000, deducted=30_000), "DisputeLost",
     {"dispute_id": "disp_1", "payment_id": "pay_1", "amount_minor": 30_000}),
    (rzp_dispute("won", INV, "pay_1", "disp_1", 50_000), "DisputeWon", {"amount_minor": 50_000}),
    (rzp_failed(INV, 1000, "pay_9"), "PaymentFailed", {"attempt_id": "pay_9", "reason": "payment_cancelled"}),
])
def test_razorpay_events_map_to_payment_facts(doc: dict[str, Any], cls: str, fields: dict[str, Any]) -> None:
    mapped = razorpay.map_event(doc["event"], doc)
    assert isinstance(mapped, Fact)
    assert mapped.cls.__name__ == cls
    assert mapped.invoice_id == INV
    assert fields.items() <= mapped.fields.items()


@pytest.mark.parametrize(("kind", "status", "expected"), [
    ("charge.dispute.created", "needs_response", "DisputeCreated"),
    ("charge.dispute.closed", "won", "DisputeWon"),
    ("charge.dispute.closed", "lost", "DisputeLost"),
    ("charge.dispute.closed", "warning_closed", None),
])
def test_stripe_disputes_map_by_status_and_carry_no_invoice(kind: str, status: str, expected: str | None) -> None:
    mapped = stripe.map_event(kind, stripe_dispute(kind, "pi_1", "du_1", 500, status))
    if expected is None:
        assert isinstance(mapped, Ignore)
        return
    assert isinstance(mapped, Fact)
    assert (mapped.cls.__name__, mapped.invoice_id, mapped.fields["payment_id"]) == (expected, None, "pi_1")


def test_a_mapped_field_of_the_wrong_type_is_a_422() -> None:
    doc = rzp_dispute("created", INV, "pay_1", "disp_1", 500)
    doc["payload"]["dispute"]["entity"]["amount"] = "500"
    with pytest.raises(MappingError) as caught:
        razorpay.map_event(doc["event"], doc)
    assert (caught.value.status, caught.value.field) == (422, "payload.dispute.entity.amount")


@pytest.mark.parametrize(("kind", "status", "expected"), [
    ("refund.created", "pending", None),
    ("refund.created", "succeeded", "RefundProcessed"),
    ("refund.updated", "succeeded", "RefundProcessed"),
    ("refund.updated", "failed", "RefundReversed"),
    ("refund.failed", "failed", "RefundReversed"),
    ("charge.refund.updated", "canceled", "RefundReversed"),
    ("refund.updated", "requires_action", None),
])
def test_stripe_refunds_map_by_status_to_a_refund_or_its_reversal(kind: str, status: str,
                                                                  expected: str | None) -> None:
    doc = {"type": kind, "data": {"object": {"id": "re_1", "object": "refund", "amount": 500, "currency": "inr",
                                             "payment_intent": "pi_1", "status": status}}}
    mapped = stripe.map_event(kind, doc)
    if expected is None:
        assert isinstance(mapped, Ignore)
        return
    assert isinstance(mapped, Fact)
    assert (mapped.cls.__name__, mapped.object_id(), mapped.kind) == (
        expected, "re_1", "refund" if expected == "RefundProcessed" else "refund_reversed")


@pytest.mark.parametrize(("kind", "item", "events"), [
    ("payments", {"id": "pay_1", "status": "captured", "captured": True}, ["payment.captured"]),
    ("payments", {"id": "pay_1", "status": "refunded", "captured": True}, ["payment.captured"]),
    ("payments", {"id": "pay_1", "status": "authorized", "captured": False}, []),
    ("payments", {"id": "pay_1", "status": "failed", "captured": False}, ["payment.failed"]),
    ("refunds", {"id": "rfnd_1", "status": "pending"}, []),
    ("refunds", {"id": "rfnd_1", "status": "processed"}, ["refund.processed"]),
    ("refunds", {"id": "rfnd_1", "status": "failed"}, ["refund.failed"]),
    ("disputes", {"id": "disp_1", "status": "open"}, ["payment.dispute.created"]),
    ("disputes", {"id": "disp_1", "status": "lost"}, ["payment.dispute.created", "payment.dispute.lost"]),
    ("disputes", {"id": "disp_1", "status": "closed"}, ["payment.dispute.created"]),
])
def test_razorpay_api_items_become_the_webhooks_their_state_would_have_sent(
    kind: str, item: dict[str, Any], events: list[str]
) -> None:
    documents = razorpay.api_documents(kind, item, {})
    assert [event for event, _ in documents] == events
    assert all(doc["event"] == event for event, doc in documents)


def test_the_fact_key_is_the_same_whichever_path_or_event_brings_it() -> None:
    fact = _capture()
    other_delivery = fact.model_copy(update={"evidence": evidence("another-event-id")})
    assert fact.dedupe_key() == other_delivery.dedupe_key() == "razorpay:acc_Studio0000001:capture:pay_1"
    assert _capture(account_id="acc_Other00000001").dedupe_key() != fact.dedupe_key()


# ---- signatures -----------------------------------------------------------------------------------------

def test_razorpay_verification_accepts_any_listed_secret_and_refuses_others() -> None:
    body = b'{"a":1}'
    sig = hmac.new(b"old", body, hashlib.sha256).hexdigest()
    verify_razorpay(body, sig, ["new", "old"])
    with pytest.raises(SignatureError, match="does not match"):
        verify_razorpay(body, sig, ["new"])


@pytest.mark.parametrize(("age_s", "ok"), [(0, True), (299, True), (301, False), (-301, False)])
def test_stripe_timestamp_tolerance(age_s: int, ok: bool) -> None:
    import stripe as stripe_sdk  # noqa: PLC0415

    now = time.time()
    ts = int(now) - age_s
    header = stripe_sdk.WebhookSignature.generate_signature_header("{}", "whsec_x", timestamp=ts)
    if ok:
        assert verify_stripe(b"{}", header, ["whsec_x"], 300, now) == ts
    else:
        with pytest.raises(SignatureError, match="tolerance"):
            verify_stripe(b"{}", header, ["whsec_x"], 300, now)
