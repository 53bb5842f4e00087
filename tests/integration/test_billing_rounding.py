"""One rounding: a notification cost is turned into paise once, half up, and the close's in-batch check
compares the stored values themselves, so no stored amount can make a close conflict with itself; and
a plan that does conflict with the rows it was made from is dead-lettered at once, with its reason.

Driven through the production unit of work (`apply_event`) on both adapters."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from arq.connections import ArqRedis

from core.money import to_paise
from events import inbox
from events.envelope import Envelope, Event, envelope_for
from events.ids import ClientId, new_id
from handlers.base import HandlerContext, Plan, ReadSet, Router
from jobqueue.arq_redis import connect
from store import Database, Statement, expect_rows, expect_version
from tests.support.billing_seed import close_event
from tests.support.factories import NOW_MS, Tenant, make_tenant
from tests.support.notify_harness import Clock, Harness, make_harness, utc

NO_ALLOWANCE = {"billing": {"included_notification_spend": "0.00"}}


@pytest.fixture
async def harness(db: Database, redis_url: str, redis: object) -> AsyncIterator[Harness]:
    client: ArqRedis = await connect(redis_url, "test:events")
    async with httpx.AsyncClient() as http:
        yield await make_harness(db, client, http, "http://127.0.0.1:9", Clock(utc(NOW_MS)))
    await client.aclose()


async def add_notification(db: Database, t: Tenant, cost: object, at_ms: int) -> str:
    """A notification written by something other than the pipeline (no charge row): billable as stored."""
    nid = new_id("ntf")
    await db.batch([Statement(
        "INSERT INTO notifications (id, branch_id, project_id, type, channel, cost, billed, created_at)"
        " VALUES (?, ?, ?, 'invoice_due', 'sms', ?, 0, ?)", (nid, t.branch_id, t.project_id, cost, at_ms))])
    return nid


async def close(h: Harness, t: Tenant, period: str) -> tuple[Envelope, str]:
    event = close_event(t.org_id, period)
    h.clock.now = max(h.clock.now, event.period_end + timedelta(hours=6))
    env = envelope_for(event, org_id=t.org_id, branch_id=None, dedupe_key=f"test:close:{t.org_id}:{period}",
                       occurred_at=h.clock.now)
    await h.deps.db.batch([inbox.insert(env, h.clock.now)])
    return env, await h.apply(env, attempt=1)


async def test_half_paisa_costs_close_on_the_first_attempt_with_half_up_lines(db: Database,
                                                                             harness: Harness) -> None:
    # SQLite rounds these the binary way (1.005 * 100 = 100.4999…): what the old in-batch check compared.
    assert await db.query("SELECT CAST(round(1.005 * 100) AS INTEGER) AS a, CAST(round(0.145 * 100) AS INTEGER) AS b"
                          ) == [{"a": 100, "b": 14}]
    assert (to_paise(1.005), to_paise(0.145)) == (101, 15)
    t = await make_tenant(db, org_config=NO_ALLOWANCE)
    ids = [await add_notification(db, t, cost, NOW_MS) for cost in (1.005, 0.145)]

    env, outcome = await close(harness, t, "2026-09")
    assert outcome == "applied"
    assert harness.retries == []  # no version conflict, not even once
    (row,) = await db.query("SELECT status, attempts FROM event_inbox WHERE id = ?", (env.event_id,))
    assert row == {"status": "applied", "attempts": 1}
    (invoice,) = await db.query("SELECT tax_json FROM invoices WHERE branch_id = ? AND invoice_type = 'overage'",
                                (t.branch_id,))
    lines = {ln["code"]: ln["amount"] for ln in json.loads(str(invoice["tax_json"]))["lines"]}
    assert lines["notifications"] == "1.16"  # 1.01 + 0.15, half up
    assert await db.query("SELECT notification_cost FROM billing_periods WHERE org_id = ?", (t.org_id,)) == [
        {"notification_cost": 1.16}]
    billed = await db.query("SELECT id FROM notifications WHERE billed = 1 ORDER BY id")
    assert [r["id"] for r in billed] == sorted(ids)


async def test_a_cost_that_is_no_amount_dead_letters_the_close_with_its_reason(db: Database,
                                                                              harness: Harness) -> None:
    t = await make_tenant(db, org_config=NO_ALLOWANCE)
    bad = await add_notification(db, t, "1,005", NOW_MS)  # text SQLite cannot take as a REAL: stored as TEXT
    env, outcome = await close(harness, t, "2026-09")
    assert outcome == "dead"
    (row,) = await db.query("SELECT last_error, attempts FROM event_inbox WHERE id = ?", (env.event_id,))
    assert row["last_error"] == f"invalid_notification_cost: notification {bad} has cost '1,005'"
    assert await db.query("SELECT count(*) AS n FROM billing_periods") == [{"n": 0}]


# --- a self-conflict is told from a concurrent change ---------------------------------------------------------

class SpendChecked(Event):
    """Test event: assert a client's total_spend is `expected` (the plan's own arithmetic), then bump it."""

    event_type = "test.spend_checked"
    client_id: ClientId
    expected: float
    concurrent_writer: bool = False  # another writer changes the row between the read and the batch


async def check_spend(event: SpendChecked, ctx: HandlerContext) -> Plan:
    read = Statement("SELECT total_spend, version FROM clients WHERE id = ?", (event.client_id,))
    (rows,) = await ctx.db.query_many([read])
    if event.concurrent_writer:
        await ctx.db.batch([Statement("UPDATE clients SET version = version + 1 WHERE id = ?", (event.client_id,))])
    return Plan(statements=[
        expect_version("clients", event.client_id, int(rows[0]["version"])),
        expect_rows("SELECT count(*) FROM clients WHERE id = ? AND total_spend = ?", [event.client_id, event.expected]),
        Statement("UPDATE clients SET version = version + 1 WHERE id = ?", (event.client_id,)),
    ], read_set=ReadSet([read], [rows]))


async def apply_check(h: Harness, t: Tenant, **fields: object) -> tuple[str, dict[str, object]]:
    deps = dataclasses.replace(h.deps, router=Router({SpendChecked: check_spend}))
    event = SpendChecked(client_id=t.client_id, **fields)  # type: ignore[arg-type]
    env = envelope_for(event, org_id=t.org_id, branch_id=t.branch_id, dedupe_key=f"test:{t.client_id}:{fields}")
    await deps.db.batch([inbox.insert(env, h.clock.now)])
    outcome = await Harness(deps, h.clock, h.retries).apply(env)
    (row,) = await deps.db.query("SELECT status, last_error FROM event_inbox WHERE id = ?", (env.event_id,))
    return outcome, row


async def test_a_plan_that_contradicts_the_rows_it_read_is_dead_lettered_at_once(db: Database,
                                                                                 harness: Harness) -> None:
    t = await make_tenant(db)
    await db.batch([Statement("UPDATE clients SET total_spend = 1.005 WHERE id = ?", (t.client_id,))])
    outcome, row = await apply_check(harness, t, expected=1.01)  # its own rounding of the stored 1.005
    assert outcome == "dead"
    assert str(row["last_error"]).startswith("self_conflict: 1 assertion(s) fail against the rows the plan was made"
                                             " from, e.g. INSERT INTO _assert(ok, code) SELECT (SELECT count(*) FROM"
                                             " clients WHERE id = ? AND total_spend = ?)")
    assert harness.retries == []


async def test_a_real_concurrent_change_is_retried_not_dead_lettered(db: Database, harness: Harness) -> None:
    t = await make_tenant(db)
    outcome, row = await apply_check(harness, t, expected=0.0, concurrent_writer=True)
    assert outcome == "retry"
    assert row["status"] == "pending"
    assert len(harness.retries) == 1
