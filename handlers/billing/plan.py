"""Pure planning of one org's period close: what was measured → the statements of ONE batch.

The batch (the worker adds the inbox guard before and the inbox bookkeeping after):
1. assert the period is not closed yet (a concurrent biller's commit → `VersionConflict` → retry,
   which then finds it closed and writes nothing);
2. when something is chargeable: assert the branch's invoice series still ends at `last`, insert the
   invoice, its number `last + 1`, the org's system actor and the audit row;
3. per chunk of the notifications read: assert each is still unbilled with the very cost value read
   (not a rounding of it: paise are computed once, in Python, half up), mark them billed and record
   which close billed them;
4. record the period closed (its primary key is the database's exactly-once guarantee).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from core.clock import epoch_ms as ms
from core.money import money
from events.billing import BillingPeriodClosed
from handlers.audit import audit_row
from handlers.base import Plan, Rejected
from handlers.billing.calendar import InvoiceNumberError, financial_year, invoice_number, org_timezone, parse_period
from handlers.billing.pricing import InvalidTerms, Quote, Usage, quote, state_of, terms_for
from store import SqlValue, Statement, expect_rows

NOTIFICATION_CHUNK = 33  # the assertion binds the count + id + (id, cost) per row: D1 allows 100 parameters


class BilledRow(NamedTuple):
    """A notification the close bills: its id, its cost in paise (half up, once), the cost as stored."""

    id: str
    paise: int
    stored: SqlValue
DEFAULT_DUE_DAYS = 15


@dataclass(frozen=True)
class Snapshot:
    """What the handler read, in one round trip."""

    org: Mapping[str, Any]
    branches: Sequence[Mapping[str, Any]]  # oldest first
    closed: bool
    storage_bytes: int
    activated_projects: int
    notifications: Sequence[BilledRow]  # unbilled, billable before the period's end
    last_seq: Mapping[tuple[str, str], int]  # (branch_id, fy) → the series' last number


@dataclass(frozen=True)
class NewIds:
    invoice_id: str
    audit_id: str


def _json(raw: object, what: str) -> dict[str, Any]:
    if raw is None or raw == "":
        return {}
    try:
        value = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise Rejected("invalid_config", f"{what} is not JSON") from exc
    if not isinstance(value, dict):
        raise Rejected("invalid_config", f"{what} must be a JSON object")
    return value


def check_period(event: BillingPeriodClosed) -> None:
    """The instants must be the local midnights that bound the named month."""
    year, month = parse_period(event.period)
    following = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
    start, end = event.period_start, event.period_end
    if start.date() != date(year, month, 1) or end.date() != following or start.time() != end.time():
        raise Rejected("invalid_period", f"{event.period}: [{start.isoformat()}, {end.isoformat()}) is not that month")


def billing_branch(config: Mapping[str, Any], branches: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """`config_json.billing.branch_id`, else the org's oldest branch."""
    wanted = config.get("branch_id")
    if wanted is None:
        return branches[0] if branches else None
    for branch in branches:
        if branch["id"] == wanted:
            return branch
    raise Rejected("wrong_tenant", f"billing branch {wanted} is not a branch of this org")


def plan_close(event: BillingPeriodClosed, snap: Snapshot, event_id: str, now: datetime, ids: NewIds) -> Plan:
    config = _json(snap.org.get("config_json"), "organizations.config_json")
    billing = config.get("billing") or {}
    if not isinstance(billing, dict):
        raise Rejected("invalid_config", "config_json.billing must be an object")
    try:
        terms = terms_for(snap.org.get("plan_tier"), billing)
    except InvalidTerms as exc:
        raise Rejected("invalid_config", str(exc)) from exc
    cost_paise = sum(row.paise for row in snap.notifications)
    usage = Usage(snap.storage_bytes, snap.activated_projects, money(Decimal(cost_paise) / 100),
                  len(snap.notifications))
    branch = billing_branch(billing, snap.branches)
    supplier = state_of(_json(branch.get("tax_json"), "tax_json"), _json(branch.get("address_json"), "address")) \
        if branch else None
    place = billing.get("place_of_supply") or config.get("state_code")
    priced = quote(usage, terms, supplier, str(place) if place else None)

    statements = [expect_rows("SELECT count(*) = 0 FROM billing_periods WHERE org_id = ? AND period = ?",
                              [event.org_id, event.period])]
    invoice_id: str | None = None
    log: dict[str, Any] = {"period": event.period, "subtotal": str(priced.subtotal),
                           "notifications": len(snap.notifications)}
    if priced.chargeable and branch is not None:
        invoice_id = ids.invoice_id
        fy = financial_year(now, org_timezone(config))
        last = snap.last_seq.get((str(branch["id"]), fy), 0)
        try:
            number = invoice_number(branch.get("invoice_prefix"), fy, last + 1)
        except InvoiceNumberError as exc:
            raise Rejected("invalid_invoice_prefix", str(exc)) from exc
        due_days = billing.get("due_days", DEFAULT_DUE_DAYS)
        if not isinstance(due_days, int | float) or isinstance(due_days, bool) or due_days < 0:
            raise Rejected("invalid_config", f"billing.due_days = {due_days!r} must be a number of days")
        tax = tax_json(event, priced, number=number, fy=fy, supplier=supplier,
                       place=str(place) if place else supplier, usage=usage,
                       tier=str(snap.org.get("plan_tier") or "free_org"))
        statements += invoice_statements(event.org_id, str(branch["id"]), ids, number=number, fy=fy, last=last,
                                         tax=tax, total=float(priced.total), now=now,
                                         due=now + timedelta(days=float(due_days)))
        log |= {"invoice_id": invoice_id, "number": number, "total": str(priced.total)}
    statements += notification_statements(event.org_id, event.period, invoice_id, snap.notifications)
    statements.append(Statement(
        "INSERT INTO billing_periods (org_id, period, invoice_id, period_start, period_end, storage_bytes,"
        " activated_projects, notification_count, notification_cost, event_id, closed_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (event.org_id, event.period, invoice_id, ms(event.period_start), ms(event.period_end), snap.storage_bytes,
         snap.activated_projects, len(snap.notifications), float(usage.notification_cost), event_id, ms(now)),
    ))
    return Plan(statements=statements, log=log)


def tax_json(event: BillingPeriodClosed, q: Quote, *, number: str, fy: str, supplier: str | None,
             place: str | None, usage: Usage, tier: str) -> str:
    return json.dumps({
        "number": number, "fy": fy, "period": event.period, "plan_tier": tier, "currency": "INR",
        "period_start": event.period_start.isoformat(), "period_end": event.period_end.isoformat(),
        "supplier_state": supplier, "place_of_supply": place,
        "supply": "inter_state" if any(t.name == "IGST" for t in q.taxes) else "intra_state",
        "lines": [{"code": ln.code, "usage": str(ln.usage), "included": str(ln.included),
                   "billable": str(ln.billable), "rate": str(ln.rate), "amount": str(ln.amount)} for ln in q.lines],
        "subtotal": str(q.subtotal),
        "taxes": [{"name": t.name, "rate": str(t.rate), "amount": str(t.amount)} for t in q.taxes],
        "tax_total": str(q.tax_total), "total": str(q.total),
        "notifications": {"count": usage.notification_count, "cost": str(usage.notification_cost)},
    }, separators=(",", ":"))


def invoice_statements(org_id: str, branch_id: str, ids: NewIds, *, number: str, fy: str, last: int, tax: str,
                       total: float, now: datetime, due: datetime) -> list[Statement]:
    issued = ms(now)
    audit = json.dumps({"invoice_id": ids.invoice_id, "number": number, "invoice_type": "overage",
                        "amount_total": f"{total:.2f}", "period": json.loads(tax)["period"]})
    return [
        expect_rows("SELECT coalesce(max(seq), 0) = ? FROM invoice_numbers WHERE branch_id = ? AND fy = ?",
                    [last, branch_id, fy]),
        Statement(
            "INSERT INTO invoices (id, branch_id, project_id, invoice_type, amount_total, tax_json, status,"
            " issued_at, due_at) VALUES (?, ?, NULL, 'overage', ?, ?, 'issued', ?, ?)",
            (ids.invoice_id, branch_id, round(total, 2), tax, issued, ms(due)),
        ),
        Statement(
            "INSERT INTO invoice_numbers (branch_id, fy, seq, invoice_id, number, issued_at) VALUES (?, ?, ?, ?, ?, ?)",
            (branch_id, fy, last + 1, ids.invoice_id, number, issued),
        ),
        *audit_row(ids.audit_id, org_id, branch_id, event_type="invoice.issued", severity="medium", payload=audit,
                   now_ms=issued),
    ]


def notification_statements(org_id: str, period: str, invoice_id: str | None,
                            notifications: Sequence[BilledRow]) -> list[Statement]:
    """Mark exactly the rows read billed: each chunk asserts its rows are unbilled with the cost read.

    The assertion compares each stored cost with the value read (`coalesce(cost, 0) = ?`, bound as read:
    D1 binds every number as REAL and returns REALs as the shortest JSON number, which reads back as the
    same double), never a rounding recomputed in SQL: SQLite's `round(1.005 * 100)` is 100 where half-up
    paise are 101, and such a check would fail against the very rows it was planned from."""
    statements: list[Statement] = []
    for i in range(0, len(notifications), NOTIFICATION_CHUNK):
        chunk = notifications[i : i + NOTIFICATION_CHUNK]
        ids = tuple(row.id for row in chunk)
        marks = ", ".join("?" * len(ids))
        cases = " ".join("WHEN ? THEN ?" for _ in chunk)
        statements += [
            expect_rows(
                f"SELECT count(*) = ? FROM notifications WHERE id IN ({marks}) AND billed = 0"
                f" AND coalesce(cost, 0) = CASE id {cases} END",
                [len(ids), *ids, *(value for row in chunk for value in (row.id, _bound(row.stored)))],
            ),
            Statement(f"UPDATE notifications SET billed = 1 WHERE billed = 0 AND id IN ({marks})", ids),
            Statement(
                "INSERT INTO billed_notifications (notification_id, org_id, period, invoice_id)"
                f" SELECT id, ?, ?, ? FROM notifications WHERE id IN ({marks})",
                (org_id, period, invoice_id, *ids),
            ),
        ]
    return statements


def _bound(stored: SqlValue) -> SqlValue:
    """The stored cost as the assertion binds it (NULL is compared as 0, like `coalesce(cost, 0)`)."""
    return 0 if stored is None else stored
