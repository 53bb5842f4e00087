"""Pure planning for payment facts: from what the handler read to the statements of one batch.

Order independence: an invoice's status and a client's total_spend are functions of ALL recorded
transactions (plus `amount_total`, `due_at` and now), never of the latest arrival. A refund or lost
dispute that arrives before its capture is recorded as it comes; once the capture lands, the sums are
those of the natural order.

Transactions (`transactions.status`, amount as REAL rounded to 2 places):
  capture → paid (+), refund → refunded (minus), dispute lost → disputed (minus the amount deducted),
  failure → failed (moves nothing). A dispute opened or won moves no money: it is recorded in the
  `gateway_objects` ledger and the audit log only.

A refund reversed (it failed or was cancelled after it succeeded) is a compensating transaction: a
`refunded` row of MINUS the refund's amount, so the refunds net to zero and the invoice's net received
and status are restored. The refund and its reversal commute: whichever is recorded second writes the
reversing row (a reversal with no refund recorded yet moves nothing — the refund may never have
succeeded — and the refund, when it comes, writes both rows). Each asserts in its batch that the other
is still unrecorded when it planned so, so concurrent workers cannot both skip it.

The tenant rule: a fact is applied only to an invoice of the org that owns the gateway account that
signed it (a studio's account, never an overage invoice), or by the platform's account to an overage
invoice; anything else is `wrong_tenant`, whatever the notes said.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from core.clock import epoch_ms
from core.money import THREE_DECIMAL, to_major, to_minor
from events.envelope import Envelope, envelope_for
from events.ids import new_id
from events.notifications import NotificationDue, notification_dedupe_key
from events.payments import ObjectKind, PaymentFact
from handlers.audit import audit_row
from handlers.base import Plan, Rejected
from store import Statement, expect_rows, expect_version

TXN_STATUS: dict[ObjectKind, str | None] = {
    "capture": "paid", "failure": "failed", "refund": "refunded", "refund_reversed": "refunded",
    "dispute_lost": "disputed", "dispute_created": None, "dispute_won": None,
}
SIGN: dict[str, int] = {"paid": 1, "refunded": -1, "disputed": -1, "failed": 0}
MONEY_KINDS: frozenset[ObjectKind] = frozenset({"capture", "refund", "refund_reversed", "dispute_lost"})
HIGH_SEVERITY: frozenset[ObjectKind] = frozenset({"refund", "refund_reversed", "dispute_created", "dispute_won",
                                                  "dispute_lost"})
# The kind whose presence decides whether a refund fact writes its reversing row too, and the other way.
COUNTERPART: dict[ObjectKind, ObjectKind] = {"refund": "refund_reversed", "refund_reversed": "refund"}


@dataclass(frozen=True)
class InvoiceRow:
    id: str
    branch_id: str
    org_id: str
    currency: str  # the org's (config_json currency, INR by default)
    project_id: str | None
    invoice_type: str | None
    amount_total: float
    status: str
    due_at: int | None
    version: int


@dataclass(frozen=True)
class ProjectRow:
    id: str
    branch_id: str
    status: str
    version: int
    client_id: str
    client_branch_id: str
    client_version: int


@dataclass(frozen=True)
class Snapshot:
    """What the handler read, in one consistent snapshot."""

    invoice: InvoiceRow | None
    project: ProjectRow | None = None
    invoice_sums: Mapping[str, int] = field(default_factory=dict)  # transactions.status → minor units
    client_sums: Mapping[str, int] = field(default_factory=dict)  # over all the client's invoices
    # What the ledger holds for this gateway object (under the signing account): kind → amount_minor.
    recorded: Mapping[str, int] = field(default_factory=dict)
    captured_on: str | None = None  # the invoice this payment's capture is recorded on, if it is
    # The org's system actor exists already: the batch need not insert it (a users row an audit row
    # names cannot go away: audit_logs is append-only and references it).
    system_user: bool = False


def net_received(sums: Mapping[str, int]) -> int:
    """Captures minus refunds minus lost disputes, in minor units."""
    return sum(SIGN.get(status, 0) * amount for status, amount in sums.items())


def derive_invoice_status(amount_total_minor: int, net_minor: int, due_at_ms: int | None, now_ms: int) -> str:
    """paid when net received covers the total; otherwise issued, or overdue once past due."""
    if net_minor >= amount_total_minor:
        return "paid"
    if due_at_ms is not None and now_ms > due_at_ms:
        return "overdue"
    return "issued"


def check_signer(event: PaymentFact, inv: InvoiceRow) -> None:
    """The tenant rule: the account that signed the fact decides whose invoice it may name."""
    if event.account_role == "platform":
        if inv.invoice_type != "overage":
            raise Rejected("wrong_tenant", f"the platform's {event.gateway} account {event.account_id} is paid"
                           f" overage invoices only; {inv.id} is not one")
        return
    if event.account_org_id != inv.org_id:
        raise Rejected("wrong_tenant", f"invoice {inv.id} does not belong to the org that owns {event.gateway}"
                       f" account {event.account_id}")
    if inv.invoice_type == "overage":
        raise Rejected("wrong_tenant", f"overage invoice {inv.id} is paid to the platform's account, not to"
                       f" studio account {event.account_id}")


def check(event: PaymentFact, snap: Snapshot, envelope: Envelope) -> InvoiceRow:
    """Permanent problems first (dead-lettered, nothing written): unknown invoice, tenant, currency."""
    inv = snap.invoice
    if inv is None:
        raise Rejected("unknown_invoice", f"invoice {event.invoice_id} does not exist")
    check_signer(event, inv)
    if event.kind == "capture" and event.amount_minor <= 0:
        raise Rejected("zero_amount", "a capture of 0 moves no money and confirms nothing")
    if inv.org_id != envelope.org_id or inv.branch_id != envelope.branch_id:
        raise Rejected("wrong_tenant", f"invoice {inv.id} belongs to another org or branch than the event")
    if snap.project and not (snap.project.branch_id == snap.project.client_branch_id == envelope.branch_id):
        raise Rejected("wrong_tenant", f"project {snap.project.id} or its client is in another branch")
    if event.kind != "capture" and snap.captured_on not in (None, inv.id):
        raise Rejected("payment_on_other_invoice",
                       f"payment {event.payment_id} was captured on {snap.captured_on}, not on {inv.id}")
    if event.currency in THREE_DECIMAL:
        raise Rejected("currency_unsupported", f"{event.currency} has 3 decimal places; amounts are stored to 2")
    if event.currency != inv.currency.upper():
        raise Rejected("currency_mismatch", f"payment in {event.currency}, branch bills in {inv.currency.upper()}")
    return inv


def transactions_for(event: PaymentFact, snap: Snapshot) -> list[tuple[str, int]]:
    """The transaction rows (status, signed minor units) recording `event`, given what is recorded."""
    status = TXN_STATUS[event.kind]
    if status is None:
        return []
    if event.kind == "refund_reversed":  # restore what the recorded refund took, or nothing yet
        return [("refunded", -snap.recorded["refund"])] if "refund" in snap.recorded else []
    rows = [(status, event.amount_minor)]
    if event.kind == "refund" and "refund_reversed" in snap.recorded:
        rows.append(("refunded", -event.amount_minor))  # its reversal came first: record both, net nothing
    return rows


def plan_payment(
    event: PaymentFact, snap: Snapshot, envelope: Envelope, now: datetime, ids: Callable[[str], str] = new_id
) -> Plan:
    """The batch that records `event` against its invoice, or raises `Rejected`."""
    inv = check(event, snap, envelope)
    what = {"gateway": event.gateway, "account_id": event.account_id, "kind": event.kind,
            "object_id": event.object_id(), "invoice_id": inv.id}
    if event.kind in snap.recorded:
        return Plan(outcome="ignored", log={"duplicate_gateway_object": True, **what})
    now_ms = epoch_ms(now)
    rows = transactions_for(event, snap)
    txn_ids = [ids("txn") for _ in rows]
    statements = [_not_yet_recorded(event, event.kind)]
    counterpart = COUNTERPART.get(event.kind)
    if counterpart is not None and counterpart not in snap.recorded:
        statements.append(_not_yet_recorded(event, counterpart))  # planned on its absence: it must stay absent
    for row_id, (status, amount) in zip(txn_ids, rows, strict=True):
        statements.append(Statement(
            "INSERT INTO transactions (id, invoice_id, gateway_payment_id, status, amount, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (row_id, inv.id, event.payment_id, status, to_major(amount, event.currency), now_ms)))
    txn_id = txn_ids[0] if txn_ids else None
    statements.append(Statement(
        "INSERT INTO gateway_objects (gateway, account_id, object_id, kind, payment_id, invoice_id, transaction_id,"
        " amount_minor, currency, event_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (event.gateway, event.account_id, event.object_id(), event.kind, event.payment_id, inv.id, txn_id,
         event.amount_minor, event.currency, envelope.event_id, now_ms)))
    log: dict[str, object] = dict(what)
    if event.kind in MONEY_KINDS and rows:
        delta = sum(SIGN[status] * amount for status, amount in rows)
        statements += _money_moved(snap, inv, delta=delta, now_ms=now_ms, log=log)
    follow_ups: list[Envelope] = []
    if event.kind == "capture" and inv.invoice_type == "booking" and snap.project and snap.project.status == "inquiry":
        statements += _activate(snap.project, now_ms)
        follow_ups.append(_booking_confirmed(snap.project.id, inv.id, envelope, ids))
        log["project_activated"] = snap.project.id
    statements += _audit(event, envelope, inv, txn_id=txn_id, now_ms=now_ms, ids=ids,
                         ensure_user=not snap.system_user)
    return Plan(statements=statements, follow_ups=follow_ups, log=log)


def _not_yet_recorded(event: PaymentFact, kind: str) -> Statement:
    # A concurrent recording of the same object makes this batch conflict (retry, then "ignored"),
    # rather than fail on the primary key, which stays as the last line of defence.
    return expect_rows(
        "SELECT count(*) = 0 FROM gateway_objects WHERE gateway = ? AND object_id = ? AND kind = ?"
        " AND account_id IN (?, '')", [event.gateway, event.object_id(), kind, event.account_id])


def _money_moved(
    snap: Snapshot, inv: InvoiceRow, *, delta: int, now_ms: int, log: dict[str, object]
) -> list[Statement]:
    net = net_received(snap.invoice_sums) + delta
    new_status = derive_invoice_status(to_minor(inv.amount_total, inv.currency), net, inv.due_at, now_ms)
    log.update(invoice_status=new_status, invoice_net_minor=net)
    # Always bump the version, even when the status stays: two concurrent partial captures must conflict.
    statements = [
        expect_version("invoices", inv.id, inv.version),
        Statement("UPDATE invoices SET status = ?, version = version + 1 WHERE id = ? AND version = ?",
                  (new_status, inv.id, inv.version)),
    ]
    if snap.project:
        spend = to_major(net_received(snap.client_sums) + delta, inv.currency)
        statements += [
            expect_version("clients", snap.project.client_id, snap.project.client_version),
            Statement("UPDATE clients SET total_spend = ?, version = version + 1 WHERE id = ? AND version = ?",
                      (spend, snap.project.client_id, snap.project.client_version)),
        ]
    return statements


def _activate(project: ProjectRow, now_ms: int) -> list[Statement]:
    return [
        expect_version("projects", project.id, project.version),
        Statement("UPDATE projects SET status = 'active', activated_at = COALESCE(activated_at, ?),"
                  " version = version + 1 WHERE id = ? AND version = ? AND status = 'inquiry'",
                  (now_ms, project.id, project.version)),
    ]


def _booking_confirmed(project_id: str, invoice_id: str, envelope: Envelope, ids: Callable[[str], str]) -> Envelope:
    due = NotificationDue(notification_id=ids("ntf"), kind="booking_confirmed", project_id=project_id,
                          invoice_id=invoice_id)
    return envelope_for(due, org_id=envelope.org_id, branch_id=envelope.branch_id,
                        dedupe_key=notification_dedupe_key("booking_confirmed", project_id), event_id=ids("evt"))


def _audit(
    event: PaymentFact, envelope: Envelope, inv: InvoiceRow, *, txn_id: str | None, now_ms: int,
    ids: Callable[[str], str], ensure_user: bool = True,
) -> list[Statement]:
    payload = {
        "gateway": event.gateway, "kind": event.kind, "invoice_id": inv.id, "payment_id": event.payment_id,
        "object_id": event.object_id(), "amount_minor": event.amount_minor, "currency": event.currency,
        "transaction_id": txn_id, "gateway_event_id": event.evidence.gateway_event_id, "event_id": envelope.event_id,
        "account_id": event.account_id, "source": event.evidence.source,
    }
    severity = "high" if event.kind in HIGH_SEVERITY else "medium"
    return audit_row(ids("aud"), envelope.org_id, inv.branch_id, event_type=envelope.type, severity=severity,
                     payload=payload, now_ms=now_ms, ensure_user=ensure_user)
