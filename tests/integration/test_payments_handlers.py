"""Payment facts applied through the real unit of work on both database adapters: hand-worked amounts,
statuses, audit rows, project activation, and the permanent refusals that write nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from events.ids import new_id
from events.payments import DisputeCreated, DisputeLost, PaymentCaptured, PaymentFact, PaymentFailed, RefundProcessed
from handlers.audit import system_user_id
from handlers.payments.handler import read_snapshot
from store import ConstraintViolation, Database, Statement
from tests.support.factories import NOW_MS, Tenant, make_tenant
from tests.support.gateway import Applier, evidence, signed_by

NOW = datetime.fromtimestamp(NOW_MS / 1000 + 86_400, tz=UTC)  # one day after the invoice was issued


@pytest.fixture
async def applier(db: Database, redis_url: str) -> AsyncIterator[Applier]:
    async with Applier.open(db, redis_url, NOW) as a:
        yield a


def capture(t: Tenant, payment_id: str, amount: int, currency: str = "INR", signer: Tenant | None = None
            ) -> PaymentCaptured:
    """A capture of `t`'s invoice, signed by `signer`'s account (by default `t`'s own)."""
    return PaymentCaptured(gateway="razorpay", invoice_id=t.invoice_id, payment_id=payment_id, amount_minor=amount,
                           currency=currency, evidence=evidence(f"ev_{payment_id}"), **signed_by(signer or t))


def refund(t: Tenant, payment_id: str, refund_id: str, amount: int) -> RefundProcessed:
    return RefundProcessed(gateway="razorpay", invoice_id=t.invoice_id, payment_id=payment_id, refund_id=refund_id,
                           amount_minor=amount, currency="INR", evidence=evidence(f"ev_{refund_id}"), **signed_by(t))


async def state(db: Database, t: Tenant) -> dict[str, Any]:
    invoice, client, project, txns, audits = await db.query_many([
        Statement("SELECT status, version FROM invoices WHERE id = ?", (t.invoice_id,)),
        Statement("SELECT total_spend FROM clients WHERE id = ?", (t.client_id,)),
        Statement("SELECT status, activated_at FROM projects WHERE id = ?", (t.project_id,)),
        Statement("SELECT gateway_payment_id, status, amount FROM transactions WHERE invoice_id = ?"
                  " ORDER BY gateway_payment_id, status, amount", (t.invoice_id,)),
        Statement("SELECT event_type, severity, actor_user_id, branch_id FROM audit_logs WHERE org_id = ?"
                  " ORDER BY event_type, severity", (t.org_id,)),
    ])
    return {"invoice": invoice[0]["status"], "total_spend": client[0]["total_spend"], "project": project[0],
            "transactions": [(r["gateway_payment_id"], r["status"], r["amount"]) for r in txns], "audits": audits}


async def test_a_full_capture_on_a_booking_invoice_pays_it_and_activates_the_project(
    db: Database, applier: Applier
) -> None:
    t = await make_tenant(db, amount_total=1180.0)
    assert await applier.deliver(capture(t, "pay_full1", 118000), t) == "applied"
    s = await state(db, t)
    assert s["invoice"] == "paid"
    assert s["total_spend"] == 1180.0
    assert s["transactions"] == [("pay_full1", "paid", 1180.0)]
    assert s["project"] == {"status": "active", "activated_at": NOW_MS + 86_400_000}
    assert [(a["event_type"], a["severity"]) for a in s["audits"]] == [("payment.captured", "medium")]
    actor = s["audits"][0]["actor_user_id"]
    assert actor == system_user_id(t.org_id)
    users = await db.query("SELECT org_id, roles_json FROM users WHERE id = ?", (actor,))
    assert users == [{"org_id": t.org_id, "roles_json": '["system"]'}]
    follow = await db.query("SELECT type, status, dedupe_key, payload_json FROM event_inbox WHERE type = ?",
                            ("notification.due",))
    assert len(follow) == 1
    assert follow[0]["dedupe_key"] == f"notify:booking_confirmed:{t.project_id}"
    payload = json.loads(follow[0]["payload_json"])["payload"]
    assert (payload["kind"], payload["project_id"], payload["invoice_id"]) == (
        "booking_confirmed", t.project_id, t.invoice_id)


async def test_partial_captures_then_a_refund_move_status_and_spend(db: Database, applier: Applier) -> None:
    t = await make_tenant(db, amount_total=1000.0)
    await applier.deliver(capture(t, "pay_p1", 60000), t)
    assert (await state(db, t))["invoice"] == "issued"
    await applier.deliver(capture(t, "pay_p2", 40000), t)
    s = await state(db, t)
    assert (s["invoice"], s["total_spend"]) == ("paid", 1000.0)
    await applier.deliver(refund(t, "pay_p1", "rfnd_p1", 25050), t)
    s = await state(db, t)
    assert (s["invoice"], s["total_spend"]) == ("issued", 749.5)
    assert s["transactions"] == [("pay_p1", "paid", 600.0), ("pay_p1", "refunded", 250.5), ("pay_p2", "paid", 400.0)]
    assert [(a["event_type"], a["severity"]) for a in s["audits"]] == [
        ("payment.captured", "medium"), ("payment.captured", "medium"), ("payment.refund_processed", "high")]
    assert s["project"]["status"] == "active"
    assert len(await db.query("SELECT id FROM users WHERE org_id = ?", (t.org_id,))) == 1


async def test_the_snapshot_says_whether_the_orgs_system_actor_exists(db: Database, applier: Applier) -> None:
    """Once the first audit row created the actor, later batches skip inserting it (it cannot go away)."""
    t = await make_tenant(db, amount_total=1000.0)
    assert not (await read_snapshot(db, capture(t, "pay_s1", 100), t.org_id)).system_user
    await applier.deliver(capture(t, "pay_s1", 60000), t)
    assert (await read_snapshot(db, capture(t, "pay_s2", 100), t.org_id)).system_user
    assert not (await read_snapshot(db, capture(t, "pay_s2", 100), new_id("org"))).system_user


async def test_a_refund_before_its_capture_converges_to_the_natural_order(db: Database, applier: Applier) -> None:
    t = await make_tenant(db, amount_total=1000.0)
    await applier.deliver(refund(t, "pay_r1", "rfnd_r1", 20000), t)
    s = await state(db, t)
    assert (s["invoice"], s["total_spend"], s["project"]["status"]) == ("issued", -200.0, "inquiry")
    await applier.deliver(capture(t, "pay_r1", 100000), t)
    s = await state(db, t)
    assert (s["invoice"], s["total_spend"], s["project"]["status"]) == ("issued", 800.0, "active")


async def test_a_lost_dispute_past_due_reopens_the_invoice_as_overdue(db: Database, applier: Applier) -> None:
    t = await make_tenant(db, amount_total=1000.0, due_at=NOW_MS)  # due before NOW
    await applier.deliver(capture(t, "pay_d1", 100000), t)
    opened = DisputeCreated(gateway="razorpay", invoice_id=t.invoice_id, payment_id="pay_d1", dispute_id="disp_d1",
                            amount_minor=100000, currency="INR", evidence=evidence("ev_disp_open"), **signed_by(t))
    await applier.deliver(opened, t)
    s = await state(db, t)
    assert (s["invoice"], len(s["transactions"])) == ("paid", 1)  # an open dispute moves no money
    lost = DisputeLost(gateway="razorpay", invoice_id=t.invoice_id, payment_id="pay_d1", dispute_id="disp_d1",
                       amount_minor=100000, currency="INR", evidence=evidence("ev_disp_lost"), **signed_by(t))
    await applier.deliver(lost, t)
    s = await state(db, t)
    assert (s["invoice"], s["total_spend"]) == ("overdue", 0.0)
    assert ("pay_d1", "disputed", 1000.0) in s["transactions"]
    assert [a["severity"] for a in s["audits"] if a["event_type"].startswith("payment.dispute")] == ["high", "high"]


async def test_a_failed_payment_is_recorded_and_moves_nothing(db: Database, applier: Applier) -> None:
    t = await make_tenant(db)
    failed = PaymentFailed(gateway="razorpay", invoice_id=t.invoice_id, payment_id="pay_f1", attempt_id="pay_f1",
                           amount_minor=118000, currency="INR", reason="payment_cancelled",
                           evidence=evidence("ev_f1"), **signed_by(t))
    assert await applier.deliver(failed, t) == "applied"
    s = await state(db, t)
    assert (s["invoice"], s["total_spend"], s["project"]["status"]) == ("issued", 0.0, "inquiry")
    assert s["transactions"] == [("pay_f1", "failed", 1180.0)]


async def test_the_same_refund_under_two_gateway_event_ids_is_recorded_once(db: Database, applier: Applier) -> None:
    """One fact, one dedupe key: the second gateway event of the same refund is a duplicate at publish (it
    was an `ignored` second inbox row while the key was the gateway event id)."""
    t = await make_tenant(db, amount_total=1000.0)
    await applier.deliver(capture(t, "pay_s1", 100000), t)
    assert await applier.deliver(refund(t, "pay_s1", "rfnd_s1", 10000), t, gateway_event_id="evA") == "applied"
    assert await applier.deliver(refund(t, "pay_s1", "rfnd_s1", 10000), t, gateway_event_id="evB") == "duplicate"
    assert len(await db.query("SELECT id FROM event_inbox WHERE type = 'payment.refund_processed'")) == 1
    s = await state(db, t)
    assert s["total_spend"] == 900.0
    assert [x for x in s["transactions"] if x[1] == "refunded"] == [("pay_s1", "refunded", 100.0)]


async def test_the_database_refuses_a_gateway_object_recorded_twice(db: Database) -> None:
    t = await make_tenant(db)
    row = ("razorpay", "acc_X", "rfnd_x", "refund", "pay_x", t.invoice_id, None, 100, "INR", new_id("evt"), 0)
    insert = Statement("INSERT INTO gateway_objects (gateway, account_id, object_id, kind, payment_id, invoice_id,"
                       " transaction_id, amount_minor, currency, event_id, created_at)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
    await db.batch([insert])
    with pytest.raises(ConstraintViolation):
        await db.batch([insert])


async def _dead_reason(db: Database) -> tuple[str, str]:
    rows = await db.query("SELECT status, last_error FROM event_inbox WHERE type LIKE 'payment.%'")
    return rows[0]["status"], rows[0]["last_error"]


async def _nothing_written(db: Database, t: Tenant) -> None:
    s = await state(db, t)
    assert (s["invoice"], s["total_spend"], s["transactions"], s["audits"]) == ("issued", 0.0, [], [])
    assert await db.query("SELECT * FROM gateway_objects") == []


async def test_an_unknown_invoice_is_dead_lettered_and_writes_nothing(db: Database, applier: Applier) -> None:
    t = await make_tenant(db)
    event = capture(t, "pay_u1", 100).model_copy(update={"invoice_id": new_id("inv")})
    assert await applier.deliver(event, t) == "dead"
    status, reason = await _dead_reason(db)
    assert (status, reason.split(":")[0]) == ("dead", "unknown_invoice")
    await _nothing_written(db, t)


async def test_an_invoice_of_another_org_is_dead_lettered_and_writes_nothing(db: Database, applier: Applier) -> None:
    mine, theirs = await make_tenant(db), await make_tenant(db)
    assert await applier.deliver(capture(theirs, "pay_w1", 118000, signer=mine), mine) == "dead"
    assert (await _dead_reason(db))[1].startswith("wrong_tenant")
    await _nothing_written(db, theirs)


async def test_a_currency_mismatch_is_dead_lettered_and_writes_nothing(db: Database, applier: Applier) -> None:
    t = await make_tenant(db)
    assert await applier.deliver(capture(t, "pay_c1", 118000, currency="USD"), t) == "dead"
    assert (await _dead_reason(db))[1].startswith("currency_mismatch")
    await _nothing_written(db, t)


async def test_a_refund_naming_another_invoice_than_its_capture_is_dead_lettered(
    db: Database, applier: Applier
) -> None:
    t = await make_tenant(db, amount_total=1180.0)
    other = new_id("inv")
    await db.batch([Statement(
        "INSERT INTO invoices (id, branch_id, project_id, invoice_type, amount_total, status, issued_at)"
        " VALUES (?, ?, ?, 'booking', 500, 'issued', ?)", (other, t.branch_id, t.project_id, NOW_MS))])
    assert await applier.deliver(capture(t, "pay_x1", 118000), t) == "applied"
    wrong = refund(t, "pay_x1", "rfnd_x1", 50000).model_copy(update={"invoice_id": other})
    assert await applier.deliver(wrong, t) == "dead"
    (dead,) = await db.query("SELECT last_error FROM event_inbox WHERE status = 'dead'")
    assert dead["last_error"].startswith("payment_on_other_invoice")
    assert await db.query("SELECT id FROM transactions WHERE invoice_id = ?", (other,)) == []
    assert (await state(db, t))["invoice"] == "paid"


async def test_a_three_decimal_currency_is_refused_not_stored_ten_times_too_large(
    db: Database, applier: Applier
) -> None:
    """KWD amounts come in fils (1/1000); the seed stores REAL to 2 places, so they are refused."""
    t = await make_tenant(db, currency="KWD")
    assert await applier.deliver(capture(t, "pay_k1", 295990, currency="KWD"), t) == "dead"
    assert (await _dead_reason(db))[1].startswith("currency_unsupported")
    await _nothing_written(db, t)


def test_facts_lock_on_their_invoice() -> None:
    t = Tenant(new_id("org"), new_id("brn"), new_id("cli"), new_id("prj"), new_id("inv"))
    fact: PaymentFact = refund(t, "pay_1", "rfnd_1", 1)
    assert fact.lock_key() == t.invoice_id
