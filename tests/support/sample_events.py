"""Event types defined by the tests, to exercise the pipeline mechanism without a domain."""

from __future__ import annotations

import asyncio

from pydantic import Field

from events.envelope import Event, envelope_for
from events.ids import ClientId, new_id
from handlers.base import HandlerContext, Plan, Rejected, Router
from store import Statement, expect_version


class SpendRecorded(Event):
    """Test event: add `amount` to a client's total_spend (a read-modify-write under a version check)."""

    event_type = "test.spend_recorded"
    client_id: ClientId
    amount: int = Field(gt=0)
    follow_up: bool = False
    pause_ms: int = 0  # sleep between read and plan, to widen the race window on purpose

    def lock_key(self) -> str | None:
        return self.client_id


class SpendAudited(Event):
    """Test event published as a follow-up of SpendRecorded."""

    event_type = "test.spend_audited"
    client_id: ClientId


async def record_spend(event: SpendRecorded, ctx: HandlerContext) -> Plan:
    rows = await ctx.db.query("SELECT name, total_spend, version FROM clients WHERE id = ?", (event.client_id,))
    if not rows:
        raise Rejected("unknown_client", event.client_id)
    client = rows[0]
    if client["name"] == "poison":
        raise Rejected("client_marked_poison", "this client cannot take spend until fixed")
    if client["name"] == "flaky":
        raise RuntimeError("a dependency of this client keeps failing")
    if event.pause_ms:
        await asyncio.sleep(event.pause_ms / 1000)
    follow_ups = []
    if event.follow_up:
        follow_ups.append(envelope_for(
            SpendAudited(client_id=event.client_id), org_id=ctx.envelope.org_id, branch_id=ctx.envelope.branch_id,
            dedupe_key=f"audit:{ctx.envelope.event_id}",
        ))
    return Plan(
        statements=[
            expect_version("clients", event.client_id, client["version"]),
            Statement("UPDATE clients SET total_spend = ?, version = version + 1 WHERE id = ?",
                      (client["total_spend"] + event.amount, event.client_id)),
        ],
        follow_ups=follow_ups,
    )


async def audit_spend(event: SpendAudited, ctx: HandlerContext) -> Plan:
    rows = await ctx.db.query("SELECT branch_id FROM clients WHERE id = ?", (event.client_id,))
    org = await ctx.db.query("SELECT org_id FROM branches WHERE id = ?", (rows[0]["branch_id"],))
    user = f"usr_{new_id('usr')[4:]}"
    return Plan(statements=[
        Statement("INSERT INTO users (id, org_id, status) VALUES (?, ?, 'system')", (user, org[0]["org_id"])),
        Statement("INSERT INTO audit_logs (id, org_id, actor_user_id, event_type, created_at) VALUES (?, ?, ?, ?, ?)",
                  (new_id("aud"), org[0]["org_id"], user, "test.spend_audited", 0)),
    ])


ROUTER = Router({SpendRecorded: record_spend, SpendAudited: audit_spend})
