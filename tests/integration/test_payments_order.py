"""Order independence, as a property: any sequence of captures, partial captures, refunds, refunds that
later fail (reversals), failures and dispute events for an invoice, delivered in any order and with
duplicates — the same job again, the same fact under another gateway event id (a sibling event), and the
same fact found by reconciliation — ends in the same invoice status, transactions, client total_spend,
ledger and audit rows as the natural order delivered once.

Driven through the production `apply_event` job on a real SQLite file and a real Redis queue."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from store import Database, Statement
from store.migrate import migrate
from store.sqlite import SqliteDatabase
from tests.support.factories import NOW_MS, Tenant, make_tenant
from tests.support.gateway import Applier, evidence, signed_by

NOW = datetime.fromtimestamp(NOW_MS / 1000 + 86_400, tz=UTC)
TOTAL = 100_000  # ₹1,000.00 in paise


ACCOUNT = "acc_PropertyTest001"  # both tenants' facts name the same account id: their audit rows compare equal


@dataclass(frozen=True)
class Payment:
    amount: int
    refund: int  # 0: none
    refund_fails: bool  # the refund fails after it succeeded: a reversal follows it
    dispute: str  # none | open | won | lost
    failed_first: bool


payments = st.builds(
    Payment,
    amount=st.sampled_from([25_000, 40_000, 60_000, 100_000]),
    refund=st.sampled_from([0, 0, 10_000, 25_000]),
    refund_fails=st.booleans(),
    dispute=st.sampled_from(["none", "none", "open", "won", "lost"]),
    failed_first=st.booleans(),
)


def natural_order(plan: list[Payment], tenant: Tenant, tag: str) -> list[PaymentFact]:
    """The facts in the order they happen: attempt, capture, refund (reversed), dispute opened, closed."""
    facts: list[PaymentFact] = []
    common = {"gateway": "razorpay", "invoice_id": tenant.invoice_id, "currency": "INR",
              **signed_by(tenant, ACCOUNT)}
    for i, p in enumerate(plan):
        pay = f"pay_{tag}_{i}"
        if p.failed_first:
            facts.append(PaymentFailed(**common, payment_id=f"pay_{tag}_f{i}", attempt_id=f"pay_{tag}_f{i}",
                                       amount_minor=p.amount, evidence=evidence(f"e{tag}f{i}")))
        facts.append(PaymentCaptured(**common, payment_id=pay, amount_minor=p.amount, evidence=evidence(f"e{tag}c{i}")))
        if p.refund:
            facts.append(RefundProcessed(**common, payment_id=pay, refund_id=f"rfnd_{tag}_{i}", amount_minor=p.refund,
                                         evidence=evidence(f"e{tag}r{i}")))
            if p.refund_fails:
                facts.append(RefundReversed(**common, payment_id=pay, refund_id=f"rfnd_{tag}_{i}",
                                            amount_minor=p.refund, evidence=evidence(f"e{tag}rr{i}")))
        if p.dispute != "none":
            dispute = {"payment_id": pay, "dispute_id": f"disp_{tag}_{i}"}
            facts.append(DisputeCreated(**common, **dispute, amount_minor=p.amount, evidence=evidence(f"e{tag}d{i}")))
            if p.dispute in ("won", "lost"):
                cls = DisputeWon if p.dispute == "won" else DisputeLost
                facts.append(cls(**common, **dispute, amount_minor=p.amount - p.refund if p.dispute == "lost"
                                 else p.amount, evidence=evidence(f"e{tag}{p.dispute}{i}")))
    return facts


@dataclass(frozen=True)
class Delivery:
    index: int  # which fact
    # "first" | "redelivery" (the same job again) | "new_event_id" (a sibling gateway event of the same fact)
    # | "reconciled" (the same fact, listed from the gateway's API by the reconciler)
    how: str


HOWS = ["redelivery", "new_event_id", "reconciled"]
SAMPLE = Tenant("org_01a2101d-abe5-750c-a3eb-7a47c0c52bed", "brn_01a2101d-abe5-750c-a3eb-7a47c0c52bed", "", "",
                "inv_01a2101d-abe5-750c-a3eb-7a47c0c52bed")


def reconciled(fact: PaymentFact, n: int) -> PaymentFact:
    """The fact as the reconciler publishes it: listed, not delivered (another id, source, time)."""
    listed = fact.evidence.model_copy(update={"gateway_event_id": f"{fact.object_id()}-listed-{n}",
                                              "source": "reconciliation", "headers": {}})
    return fact.model_copy(update={"evidence": listed})


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Payment], bool, list[Delivery]]:
    plan = draw(st.lists(payments, min_size=1, max_size=3))
    n = len(natural_order(plan, SAMPLE, "x"))
    extra = draw(st.lists(st.tuples(st.integers(0, n - 1), st.sampled_from(HOWS)), max_size=5))
    deliveries = [Delivery(i, "first") for i in range(n)] + [Delivery(i, how) for i, how in extra]
    return plan, draw(st.booleans()), draw(st.permutations(deliveries))


async def snapshot(db: Database, t: Tenant, tag: str) -> dict[str, Any]:
    def norm(value: Any) -> Any:
        return json.loads(json.dumps(value).replace(tag, "TAG"))

    invoice, client, project, txns, ledger, audits = await db.query_many([
        Statement("SELECT status FROM invoices WHERE id = ?", (t.invoice_id,)),
        Statement("SELECT total_spend FROM clients WHERE id = ?", (t.client_id,)),
        Statement("SELECT status, activated_at FROM projects WHERE id = ?", (t.project_id,)),
        Statement("SELECT gateway_payment_id, status, amount FROM transactions WHERE invoice_id = ?", (t.invoice_id,)),
        Statement("SELECT object_id, kind, amount_minor FROM gateway_objects WHERE invoice_id = ?", (t.invoice_id,)),
        Statement("SELECT event_type, severity, payload_json FROM audit_logs WHERE org_id = ?", (t.org_id,)),
    ])
    audit_rows = []
    for a in audits:
        payload = json.loads(a["payload_json"])
        for volatile in ("transaction_id", "event_id", "gateway_event_id", "invoice_id", "source"):
            payload.pop(volatile)
        audit_rows.append([a["event_type"], a["severity"], payload])
    return norm({
        "invoice": invoice[0]["status"], "total_spend": client[0]["total_spend"], "project": project[0],
        "transactions": sorted([r["gateway_payment_id"], r["status"], r["amount"]] for r in txns),
        "ledger": sorted([r["object_id"], r["kind"], r["amount_minor"]] for r in ledger),
        "audits": sorted(audit_rows, key=json.dumps),
    })


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("order") / "studiovault.db"


@pytest.fixture
async def applier(db_path: Path, redis_url: str) -> AsyncIterator[Applier]:
    db = await SqliteDatabase.open(db_path)
    await migrate(db)
    async with Applier.open(db, redis_url, NOW) as a:
        yield a
    await db.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=scenarios())
async def test_any_delivery_order_with_duplicates_converges_to_the_natural_order(
    applier: Applier, scenario: tuple[list[Payment], bool, list[Delivery]]
) -> None:
    """Each example uses two fresh tenants (and object ids tagged per tenant) in the shared database."""
    plan, past_due, deliveries = scenario
    due_at = NOW_MS if past_due else NOW_MS + 7 * 86_400_000
    db = applier.db
    once = await make_tenant(db, amount_total=TOTAL / 100, due_at=due_at)
    shuffled = await make_tenant(db, amount_total=TOTAL / 100, due_at=due_at)
    tag_a, tag_b = (uuid.uuid4().hex[:10] for _ in range(2))

    for fact in natural_order(plan, once, tag_a):
        assert await applier.deliver(fact, once) == "applied"

    facts = natural_order(plan, shuffled, tag_b)
    seen: dict[int, str] = {}
    for n, d in enumerate(deliveries):
        fact = facts[d.index]
        if d.how == "redelivery" and d.index in seen:  # at-least-once: the same job again
            assert await applier.apply(seen[d.index]) == "duplicate"
            continue
        if d.how == "reconciled":
            fact = reconciled(fact, n)
        event_id = f"{fact.evidence.gateway_event_id}-{n}" if d.how == "new_event_id" else None
        outcome = await applier.deliver(fact, shuffled, gateway_event_id=event_id)
        first = d.index not in seen
        assert outcome == ("applied" if first else "duplicate")  # one fact, one key: only the first applies
        row = await db.query("SELECT payload_json FROM event_inbox WHERE dedupe_key = ?", (fact.dedupe_key(),))
        seen.setdefault(d.index, row[0]["payload_json"])

    assert await snapshot(db, shuffled, tag_b) == await snapshot(db, once, tag_a)
