"""Invoices to pay and the payment events/webhooks that pay them, for the apply and ingress scenarios.

Every invoice has its own client and project (so captures on different invoices touch different rows,
as in production); tenants are spread over a few orgs. Projects are `active` already, so a capture
produces no follow-up event and the benchmark counts exactly the events it published.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from events.envelope import Envelope, envelope_for
from events.ids import new_id
from store import Database, Statement

NOW_MS = 1_790_000_000_000
INVOICE_RUPEES = 1180.0
BATCH_STATEMENTS = 900  # under the D1 bridge's 1,000 statements per batch


@dataclass(frozen=True)
class InvoiceRef:
    org_id: str
    branch_id: str
    invoice_id: str


async def seed_invoices(db: Database, count: int, orgs: int = 10, amount_total: float = INVOICE_RUPEES
                        ) -> list[InvoiceRef]:
    """`count` issued booking invoices, each with its own client and active project, over `orgs` orgs."""
    tenants: list[tuple[str, str]] = []
    statements: list[Statement] = []
    for _ in range(max(1, min(orgs, count))):
        org, branch = new_id("org"), new_id("brn")
        tenants.append((org, branch))
        statements += [
            Statement("INSERT INTO organizations (id, name, config_json, plan_tier, created_at) VALUES (?, ?, ?, ?, ?)",
                      (org, "Bench Studio", json.dumps({"currency": "INR"}), "paid_org", NOW_MS)),
            Statement("INSERT INTO branches (id, org_id, name, address_json, tax_json, invoice_prefix, created_at)"
                      " VALUES (?, ?, ?, ?, ?, ?, ?)",
                      (branch, org, "Bengaluru", json.dumps({"state_code": "KA"}),
                       json.dumps({"gstin": "29ABCDE1234F1Z5", "state_code": "KA"}), "BLR-", NOW_MS)),
        ]
    refs = []
    for i in range(count):
        org, branch = tenants[i % len(tenants)]
        client, project, invoice = new_id("cli"), new_id("prj"), new_id("inv")
        refs.append(InvoiceRef(org, branch, invoice))
        statements += [
            Statement("INSERT INTO clients (id, branch_id, name, phone, created_at) VALUES (?, ?, ?, ?, ?)",
                      (client, branch, f"Client {i}", f"+9198{i:08d}", NOW_MS)),
            Statement("INSERT INTO projects (id, branch_id, client_id, status, created_at) VALUES (?, ?, ?, ?, ?)",
                      (project, branch, client, "active", NOW_MS)),
            Statement("INSERT INTO invoices (id, branch_id, project_id, invoice_type, amount_total, status,"
                      " issued_at, due_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (invoice, branch, project, "booking", amount_total, "issued", NOW_MS,
                       NOW_MS + 7 * 86_400_000)),
        ]
    for start in range(0, len(statements), BATCH_STATEMENTS):
        await db.batch(statements[start:start + BATCH_STATEMENTS])
    return refs


BENCH_ACCOUNT = "acc_bench"  # the Razorpay account the benchmark's webhooks are signed for


def captured_envelope(ref: InvoiceRef, amount_minor: int) -> Envelope:
    """The envelope the ingress would publish for a Razorpay `payment.captured` of this invoice."""
    from events.payments import GatewayEvidence, PaymentCaptured  # noqa: PLC0415 - only when seeding

    gateway_event_id = new_id("evt").replace("evt_", "rzp_evt_").replace("-", "")
    now = datetime.now(UTC)
    evidence = GatewayEvidence(
        gateway_event_id=gateway_event_id, gateway_event_type="payment.captured",
        body_sha256=hashlib.sha256(gateway_event_id.encode()).hexdigest(),
        headers={"x-razorpay-event-id": gateway_event_id, "content-type": "application/json"}, received_at=now,
    )
    event = PaymentCaptured(gateway="razorpay", invoice_id=ref.invoice_id, payment_id=f"pay_{gateway_event_id[8:]}",
                            amount_minor=amount_minor, currency="INR", evidence=evidence, account_id=BENCH_ACCOUNT,
                            account_role="studio", account_org_id=ref.org_id)
    return envelope_for(event, org_id=ref.org_id, branch_id=ref.branch_id, dedupe_key=event.dedupe_key(),
                        occurred_at=now)


def razorpay_captured(ref: InvoiceRef, amount_minor: int, secret: str, index: int) -> tuple[bytes, dict[str, str]]:
    """A signed Razorpay `payment.captured` webhook (body, headers) for this invoice."""
    payment_id = f"pay_bench{index:012d}"
    body = json.dumps({
        "entity": "event", "account_id": BENCH_ACCOUNT, "event": "payment.captured", "contains": ["payment"],
        "created_at": NOW_MS // 1000,
        "payload": {"payment": {"entity": {
            "id": payment_id, "entity": "payment", "amount": amount_minor, "currency": "INR", "status": "captured",
            "order_id": f"order_bench{index:012d}", "method": "upi", "captured": True,
            "notes": {"invoice_id": ref.invoice_id}, "created_at": NOW_MS // 1000,
        }}},
    }, separators=(",", ":")).encode()
    signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return body, {"content-type": "application/json", "x-razorpay-signature": signature,
                  "x-razorpay-event-id": f"evt_bench{index:012d}"}


def write_webhooks(path: str, refs: Sequence[InvoiceRef], amount_minor: int, secret: str) -> None:
    """One JSON line per webhook (body as text, headers), for the load generator process to read."""
    with open(path, "w") as out:
        for i, ref in enumerate(refs):
            body, headers = razorpay_captured(ref, amount_minor, secret, i)
            out.write(json.dumps({"body": body.decode(), "headers": headers}) + "\n")
