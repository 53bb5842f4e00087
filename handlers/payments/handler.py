"""Payment handlers: read the invoice, its project and client, and the money recorded so far (one round
trip, one snapshot), then plan purely (`handlers.payments.plan`) one batch that records the fact."""

from __future__ import annotations

import json
from typing import Any

from core.money import exponent
from events.payments import (
    DisputeCreated,
    DisputeLost,
    DisputeWon,
    GatewayEventIgnored,
    PaymentCaptured,
    PaymentFact,
    PaymentFailed,
    RefundProcessed,
    RefundReversed,
)
from handlers.audit import SYSTEM_USER_EXISTS, system_user_id
from handlers.base import HandlerContext, Plan, Rejected
from handlers.payments.plan import InvoiceRow, ProjectRow, Snapshot, plan_payment
from store import Database, Statement

# REAL amounts → integer hundredths, summed exactly in SQL (never a float sum).
_HUNDREDTHS = "sum(CAST(round(t.amount * 100) AS INTEGER))"


async def read_snapshot(db: Database, event: PaymentFact, org_id: str | None = None) -> Snapshot:
    """Invoice (+ org currency), project and client, money so far, ledger hit, and whether `org_id`'s
    system actor exists (the audit row's author): one round trip, one snapshot."""
    actor = system_user_id(org_id) if org_id else ""
    invoice_rows, project_rows, invoice_sums, client_sums, ledger_rows, capture_rows = await db.query_many([
        Statement(
            "SELECT i.id, i.branch_id, b.org_id, o.config_json, i.project_id, i.invoice_type, i.amount_total,"
            f" i.status, i.due_at, i.version, {SYSTEM_USER_EXISTS} AS system_user FROM invoices i"
            " JOIN branches b ON b.id = i.branch_id JOIN organizations o ON o.id = b.org_id WHERE i.id = ?",
            (actor, event.invoice_id)),
        Statement(
            "SELECT p.id, p.branch_id, p.status, p.version, p.client_id, c.branch_id AS client_branch_id,"
            " c.version AS client_version FROM invoices i JOIN projects p ON p.id = i.project_id"
            " JOIN clients c ON c.id = p.client_id WHERE i.id = ?", (event.invoice_id,)),
        Statement(f"SELECT t.status, {_HUNDREDTHS} AS h FROM transactions t WHERE t.invoice_id = ?"
                  " GROUP BY t.status", (event.invoice_id,)),
        Statement(
            f"SELECT t.status, {_HUNDREDTHS} AS h FROM transactions t JOIN invoices i ON i.id = t.invoice_id"
            " JOIN projects p ON p.id = i.project_id WHERE p.client_id = (SELECT p2.client_id FROM invoices i2"
            " JOIN projects p2 ON p2.id = i2.project_id WHERE i2.id = ?) GROUP BY t.status", (event.invoice_id,)),
        Statement("SELECT kind, amount_minor FROM gateway_objects WHERE gateway = ? AND object_id = ?"
                  " AND account_id IN (?, '')", (event.gateway, event.object_id(), event.account_id)),
        Statement("SELECT invoice_id FROM gateway_objects WHERE gateway = ? AND payment_id = ? AND kind = 'capture'"
                  " AND account_id IN (?, '') LIMIT 1", (event.gateway, event.payment_id, event.account_id)),
    ])
    if not invoice_rows:
        return Snapshot(invoice=None)
    invoice = _invoice(invoice_rows[0])
    project = _project(project_rows[0]) if project_rows else None
    return Snapshot(
        invoice=invoice, project=project, invoice_sums=_sums(invoice_sums, invoice.currency),
        client_sums=_sums(client_sums, invoice.currency) if project else {},
        recorded={str(r["kind"]): int(r["amount_minor"]) for r in ledger_rows},
        captured_on=str(capture_rows[0]["invoice_id"]) if capture_rows else None,
        system_user=bool(invoice_rows[0]["system_user"]),
    )


def _invoice(row: dict[str, Any]) -> InvoiceRow:
    try:
        config = json.loads(row["config_json"] or "{}")
    except ValueError as exc:
        raise Rejected("invalid_org_config", "organizations.config_json is not JSON") from exc
    currency = str(config.get("currency") or "INR") if isinstance(config, dict) else "INR"
    return InvoiceRow(
        id=row["id"], branch_id=row["branch_id"], org_id=row["org_id"], currency=currency.upper(),
        project_id=row["project_id"], invoice_type=row["invoice_type"], amount_total=float(row["amount_total"]),
        status=row["status"], due_at=int(row["due_at"]) if row["due_at"] is not None else None,
        version=int(row["version"]),
    )


def _project(row: dict[str, Any]) -> ProjectRow:
    return ProjectRow(id=row["id"], branch_id=row["branch_id"], status=row["status"], version=int(row["version"]),
                      client_id=row["client_id"], client_branch_id=row["client_branch_id"],
                      client_version=int(row["client_version"]))


def _sums(rows: list[dict[str, Any]], currency: str) -> dict[str, int]:
    """Hundredths → the currency's minor units."""
    scale = 10 ** (2 - exponent(currency))
    return {str(r["status"]): int(r["h"] or 0) // scale for r in rows}


async def _record(event: PaymentFact, ctx: HandlerContext) -> Plan:
    return plan_payment(event, await read_snapshot(ctx.db, event, ctx.envelope.org_id), ctx.envelope, ctx.now)


async def record_capture(event: PaymentCaptured, ctx: HandlerContext) -> Plan:
    return await _record(event, ctx)


async def record_failed_payment(event: PaymentFailed, ctx: HandlerContext) -> Plan:
    return await _record(event, ctx)


async def record_refund(event: RefundProcessed, ctx: HandlerContext) -> Plan:
    return await _record(event, ctx)


async def record_refund_reversal(event: RefundReversed, ctx: HandlerContext) -> Plan:
    return await _record(event, ctx)


async def record_dispute_opened(event: DisputeCreated, ctx: HandlerContext) -> Plan:
    return await _record(event, ctx)


async def record_dispute_won(event: DisputeWon, ctx: HandlerContext) -> Plan:
    return await _record(event, ctx)


async def record_dispute_lost(event: DisputeLost, ctx: HandlerContext) -> Plan:
    return await _record(event, ctx)


async def acknowledge_ignored(event: GatewayEventIgnored, ctx: HandlerContext) -> Plan:
    """Ignored gateway events are recorded as `ignored` by the ingress and never enqueued; should one be
    replayed, it is acknowledged again with no effect."""
    return Plan(outcome="ignored", log={"reason": event.reason})

