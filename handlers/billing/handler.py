"""Handler of `BillingPeriodClosed`: measure the org's period in ONE read round trip, price it, and
plan one batch that issues at most one overage invoice and bills each notification once.

Every read goes through the seed's indexes (asserted by tests/integration/test_billing_queries.py): the org's
branches by `idx_branches_org_id`, then media, projects and notifications by their branch_id indexes.
"""

from __future__ import annotations

import dataclasses
from decimal import InvalidOperation

from core.clock import epoch_ms as ms
from core.money import to_paise
from events.billing import BillingPeriodClosed
from events.ids import new_id
from handlers.base import Defer, HandlerContext, Plan, ReadSet, Rejected
from handlers.billing.plan import BilledRow, NewIds, Snapshot, check_period, plan_close
from store import Database, SqlValue, Statement

ORG_SQL = "SELECT id, config_json, plan_tier, created_at FROM organizations WHERE id = ?"
BRANCHES_SQL = (
    "SELECT id, tax_json, address_json, invoice_prefix, created_at FROM branches WHERE org_id = ?"
    " ORDER BY created_at, id"
)
CLOSED_SQL = "SELECT invoice_id FROM billing_periods WHERE org_id = ? AND period = ?"
STORAGE_SQL = (
    "SELECT coalesce(sum(m.size_bytes), 0) AS bytes FROM branches b"
    " JOIN media_objects m ON m.branch_id = b.id WHERE b.org_id = ?"
)
PROJECTS_SQL = (
    "SELECT count(*) AS n FROM branches b JOIN projects p ON p.branch_id = b.id"
    " WHERE b.org_id = ? AND p.activated_at >= ? AND p.activated_at < ?"
)
# Unbilled notifications sent before the period's end that are billable by then: their charge
# (migration 0010) reached its channel's billable moment before the end, or they have no charge row
# (written by anything other than the pipeline, or before 0010: billable as recorded).
NOTIFICATIONS_SQL = (
    "SELECT n.id, n.cost FROM branches b JOIN notifications n ON n.branch_id = b.id"
    " LEFT JOIN notification_charges c ON c.id = n.id"
    " WHERE b.org_id = ? AND n.billed = 0 AND n.created_at < ?"
    " AND (c.id IS NULL OR (c.state = 'billable' AND c.billable_at < ?)) ORDER BY n.id"
)
SERIES_SQL = (
    "SELECT s.branch_id, s.fy, max(s.seq) AS seq FROM branches b JOIN invoice_numbers s ON s.branch_id = b.id"
    " WHERE b.org_id = ? GROUP BY s.branch_id, s.fy"
)


def snapshot_reads(event: BillingPeriodClosed) -> list[Statement]:
    org, start, end = event.org_id, ms(event.period_start), ms(event.period_end)
    return [
        Statement(ORG_SQL, (org,)),
        Statement(BRANCHES_SQL, (org,)),
        Statement(CLOSED_SQL, (org, event.period)),
        Statement(STORAGE_SQL, (org,)),
        Statement(PROJECTS_SQL, (org, start, end)),
        Statement(NOTIFICATIONS_SQL, (org, end, end)),
        Statement(SERIES_SQL, (org,)),
    ]


async def read_snapshot(db: Database, event: BillingPeriodClosed) -> Snapshot | None:
    """Everything the close needs, in one round trip (one consistent snapshot); None: no such org."""
    snap, _ = await read_snapshot_with_reads(db, event)
    return snap


async def read_snapshot_with_reads(db: Database, event: BillingPeriodClosed) -> tuple[Snapshot | None, ReadSet]:
    """The snapshot, and the reads it came from (for telling a self-conflict from a concurrent change)."""
    reads = snapshot_reads(event)
    results = await db.query_many(reads)
    org, branches, closed, storage, projects, notes, series = results
    read_set = ReadSet(reads, results)
    if not org:
        return None, read_set
    return Snapshot(
        org=org[0],
        branches=branches,
        closed=bool(closed),
        storage_bytes=int(storage[0]["bytes"]),
        activated_projects=int(projects[0]["n"]),
        notifications=[billed_row(r["id"], r["cost"]) for r in notes],
        last_seq={(str(r["branch_id"]), str(r["fy"])): int(r["seq"]) for r in series},
    ), read_set


def billed_row(notification_id: object, cost: SqlValue) -> BilledRow:
    """(id, paise, the cost as stored). Paise are computed once, here, half up (`core.money.to_paise`);
    the batch re-checks the stored value itself, never a rounding of it. A cost that is no amount is
    permanent bad data: the close dead-letters naming it."""
    try:
        paise = to_paise(cost if cost is not None else 0)
    except (InvalidOperation, ValueError, TypeError) as exc:
        raise Rejected("invalid_notification_cost", f"notification {notification_id} has cost {cost!r}") from exc
    return BilledRow(str(notification_id), paise, cost)


async def bill_period(event: BillingPeriodClosed, ctx: HandlerContext) -> Plan:
    """Close `event.period` for the org: one overage invoice when something is chargeable, else none."""
    if event.org_id != ctx.envelope.org_id:
        raise Rejected("wrong_tenant", f"event for org {event.org_id} published under {ctx.envelope.org_id}")
    check_period(event)
    if event.period_end > ctx.now:
        raise Defer(event.period_end, f"billing period {event.period} has not ended")
    snap, read_set = await read_snapshot_with_reads(ctx.db, event)
    if snap is None:
        raise Rejected("unknown_org", event.org_id)
    if ctx.envelope.branch_id is not None and ctx.envelope.branch_id not in {b["id"] for b in snap.branches}:
        raise Rejected("wrong_tenant", f"branch {ctx.envelope.branch_id} is not a branch of org {event.org_id}")
    if snap.closed:
        return Plan(outcome="ignored", log={"period": event.period, "already_closed": True})
    ids = NewIds(invoice_id=new_id("inv"), audit_id=new_id("aud"))
    return dataclasses.replace(plan_close(event, snap, ctx.envelope.event_id, ctx.now, ids), read_set=read_set)
