"""The tenant rule and refund reversals, applied through the real unit of work on both database adapters."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from events.ids import new_id
from events.payments import PaymentCaptured, RefundProcessed, RefundReversed
from store import Database, Statement
from tests.support.factories import NOW_MS, Tenant, make_tenant
from tests.support.gateway import Applier, evidence, signed_by

NOW = datetime.fromtimestamp(NOW_MS / 1000 + 86_400, tz=UTC)


@pytest.fixture
async def applier(db: Database, redis_url: str) -> AsyncIterator[Applier]:
    async with Applier.open(db, redis_url, NOW) as a:
        yield a


def capture(t: Tenant, payment_id: str, amount: int, signer: dict[str, Any]) -> PaymentCaptured:
    return PaymentCaptured(gateway="razorpay", invoice_id=t.invoice_id, payment_id=payment_id, amount_minor=amount,
                           currency="INR", evidence=evidence(f"ev_{payment_id}"), **signer)


def refund(t: Tenant, cls: type[RefundProcessed] | type[RefundReversed], amount: int = 30_000,
           refund_id: str = "re_t1") -> RefundProcessed | RefundReversed:
    return cls(gateway="stripe", invoice_id=t.invoice_id, payment_id="pi_t1", refund_id=refund_id,
               amount_minor=amount, currency="INR", evidence=evidence(f"ev_{cls.kind}_{refund_id}"),
               **signed_by(t, "acct_1StudioTest000001"))


async def money(db: Database, t: Tenant) -> dict[str, Any]:
    invoice, client, txns, ledger = await db.query_many([
        Statement("SELECT status FROM invoices WHERE id = ?", (t.invoice_id,)),
        Statement("SELECT total_spend FROM clients WHERE id = ?", (t.client_id,)),
        Statement("SELECT status, amount FROM transactions WHERE invoice_id = ? ORDER BY status, amount",
                  (t.invoice_id,)),
        Statement("SELECT kind, amount_minor FROM gateway_objects WHERE invoice_id = ? ORDER BY kind", (t.invoice_id,)),
    ])
    return {"invoice": invoice[0]["status"], "spend": client[0]["total_spend"],
            "transactions": [(r["status"], r["amount"]) for r in txns],
            "ledger": [(r["kind"], r["amount_minor"]) for r in ledger]}


async def dead_reason(db: Database) -> str:
    (row,) = await db.query("SELECT last_error FROM event_inbox WHERE status = 'dead'")
    return str(row["last_error"])


async def make_overage_invoice(db: Database, t: Tenant) -> str:
    invoice = new_id("inv")
    await db.batch([Statement(
        "INSERT INTO invoices (id, branch_id, project_id, invoice_type, amount_total, status, issued_at)"
        " VALUES (?, ?, NULL, 'overage', 118, 'issued', ?)", (invoice, t.branch_id, NOW_MS))])
    return invoice


async def test_a_fact_signed_by_one_studio_naming_anothers_invoice_is_wrong_tenant_and_writes_nothing(
    db: Database, applier: Applier
) -> None:
    a, b = await make_tenant(db), await make_tenant(db)
    # A's account signed it; the envelope even names B (as notes naming B's org and branch would).
    assert await applier.deliver(capture(b, "pay_x1", 118_000, signed_by(a)), b) == "dead"
    assert (await dead_reason(db)).startswith("wrong_tenant: invoice")
    assert await money(db, b) == {"invoice": "issued", "spend": 0.0, "transactions": [], "ledger": []}
    assert await db.query("SELECT id FROM audit_logs") == []


async def test_the_platform_account_pays_overage_invoices_only(db: Database, applier: Applier) -> None:
    t = await make_tenant(db)
    overage = await make_overage_invoice(db, t)
    on_overage = PaymentCaptured(gateway="razorpay", invoice_id=overage, payment_id="pay_ov1", amount_minor=11_800,
                                 currency="INR", evidence=evidence("ev_ov1"), **signed_by(None, "acc_Platform0000001"))
    assert await applier.deliver(on_overage, t) == "applied"
    assert (await db.query("SELECT status FROM invoices WHERE id = ?", (overage,)))[0]["status"] == "paid"
    assert await applier.deliver(capture(t, "pay_ov2", 118_000, signed_by(None, "acc_Platform0000001")), t) == "dead"
    assert (await dead_reason(db)).startswith("wrong_tenant: the platform's razorpay account")


async def test_a_studio_account_cannot_pay_an_overage_invoice(db: Database, applier: Applier) -> None:
    t = await make_tenant(db)
    overage = await make_overage_invoice(db, t)
    fact = PaymentCaptured(gateway="razorpay", invoice_id=overage, payment_id="pay_ov3", amount_minor=11_800,
                           currency="INR", evidence=evidence("ev_ov3"), **signed_by(t))
    assert await applier.deliver(fact, t) == "dead"
    assert (await dead_reason(db)).startswith("wrong_tenant: overage invoice")


def test_a_capture_of_zero_cannot_even_be_an_event() -> None:
    t = Tenant(new_id("org"), new_id("brn"), new_id("cli"), new_id("prj"), new_id("inv"))
    with pytest.raises(ValidationError, match="capture of 0"):
        capture(t, "pay_z", 0, signed_by(t))


async def test_a_refund_that_fails_after_it_succeeded_is_reversed_once_restoring_the_invoice(
    db: Database, applier: Applier
) -> None:
    t = await make_tenant(db, amount_total=1000.0)
    assert await applier.deliver(capture(t, "pi_t1", 100_000, signed_by(t, "acct_1StudioTest000001")), t) == "applied"
    await applier.deliver(refund(t, RefundProcessed), t)
    assert (await money(db, t))["invoice"] == "issued"
    assert await applier.deliver(refund(t, RefundReversed), t, gateway_event_id="evt_refund_updated") == "applied"
    # refund.failed and charge.refund.updated: the same fact, the same key
    for sibling in ("evt_refund_failed", "evt_charge_refund_updated"):
        assert await applier.deliver(refund(t, RefundReversed), t, gateway_event_id=sibling) == "duplicate"
    assert await money(db, t) == {
        "invoice": "paid", "spend": 1000.0,
        "transactions": [("paid", 1000.0), ("refunded", -300.0), ("refunded", 300.0)],
        "ledger": [("capture", 100_000), ("refund", 30_000), ("refund_reversed", 30_000)]}
    audits = await db.query("SELECT event_type, severity FROM audit_logs WHERE event_type = 'payment.refund_reversed'")
    assert audits == [{"event_type": "payment.refund_reversed", "severity": "high"}]


async def test_a_reversal_before_its_refund_converges_to_the_same_state(db: Database, applier: Applier) -> None:
    t = await make_tenant(db, amount_total=1000.0)
    await applier.deliver(capture(t, "pi_t1", 100_000, signed_by(t, "acct_1StudioTest000001")), t)
    assert await applier.deliver(refund(t, RefundReversed), t) == "applied"
    early = await money(db, t)
    assert (early["invoice"], early["spend"], early["transactions"]) == ("paid", 1000.0, [("paid", 1000.0)])
    assert await applier.deliver(refund(t, RefundProcessed), t) == "applied"
    assert await money(db, t) == {
        "invoice": "paid", "spend": 1000.0,
        "transactions": [("paid", 1000.0), ("refunded", -300.0), ("refunded", 300.0)],
        "ledger": [("capture", 100_000), ("refund", 30_000), ("refund_reversed", 30_000)]}


async def test_a_refund_that_failed_without_ever_succeeding_moves_nothing(db: Database, applier: Applier) -> None:
    t = await make_tenant(db, amount_total=1000.0)
    await applier.deliver(capture(t, "pi_t1", 100_000, signed_by(t, "acct_1StudioTest000001")), t)
    assert await applier.deliver(refund(t, RefundReversed, refund_id="re_never"), t) == "applied"
    state = await money(db, t)
    assert (state["invoice"], state["spend"], state["transactions"]) == ("paid", 1000.0, [("paid", 1000.0)])
    assert ("refund_reversed", 30_000) in state["ledger"]
