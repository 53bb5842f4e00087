"""Billing through real arq workers racing on one SQLite file: one invoice per org and period, gapless
numbers, and notification cost conserved while new notifications are being recorded."""

from __future__ import annotations

import asyncio
import json
import random
from collections import defaultdict
from datetime import datetime

from events.billing import billing_dedupe_key
from events.envelope import envelope_for
from events.ids import new_id
from handlers.billing.calendar import org_timezone as tz_of
from handlers.billing.calendar import period_bounds
from producers.billing_close import publish_period_closes
from store import Database, Statement
from tests.support.billing_seed import SeedSpec, close_event, seed_sqlite_file
from tests.support.factories import Tenant, make_tenant
from tests.support.pipeline import Pipeline

ROUTER = "handlers.routes:ROUTER"
# One job at a time per worker, several workers: the race is between workers (separate connections).
# Within one process, concurrent multi-statement reads on store.sqlite's shared reader connection
# currently collide ("cannot start a transaction within a transaction"): reported to the lead.
WORKER = {"max_jobs": 1}
GIB = 1024**3
PERIODS = [f"2026-{m:02d}" for m in range(1, 11)]  # all ended before the real clock (Nov 2026 or later)


async def publish_close(pipeline: Pipeline, org_id: str, period: str, copy: int) -> None:
    """Publish a close under a key of its own: bypasses the producer's dedupe, as a buggy re-run would."""
    event = close_event(org_id, period)
    key = billing_dedupe_key(org_id, period) + (f":copy{copy}" if copy else "")
    await pipeline.publisher.publish(envelope_for(event, org_id=org_id, branch_id=None, dedupe_key=key))


async def add_gib(db: Database, t: Tenant) -> None:
    await db.batch([Statement(
        "INSERT INTO media_objects (id, project_id, branch_id, path, size_bytes) VALUES (?, ?, ?, ?, ?)",
        (new_id("med"), t.project_id, t.branch_id, f"{t.org_id}/big.raw", GIB),
    )])


async def test_concurrent_reruns_issue_one_invoice_per_period_and_a_gapless_series(pipeline: Pipeline) -> None:
    db = pipeline.db
    busy = await make_tenant(db, org_config={"billing": {"included_storage_bytes": 0}})
    others = [await make_tenant(db, org_config={"billing": {"included_storage_bytes": 0}}) for _ in range(3)]
    for t in (busy, *others):
        await add_gib(db, t)  # ₹4.00 + GST every period
    for copy in range(3):
        for period in PERIODS:
            await publish_close(pipeline, busy.org_id, period, copy)
        for t in others:
            await publish_close(pipeline, t.org_id, "2026-10", copy)
    for _ in range(3):
        await pipeline.start_worker(router_path=ROUTER, **WORKER)
    await pipeline.settle(within=60)

    outcomes = await db.query("SELECT status, count(*) AS n FROM event_inbox GROUP BY status ORDER BY status")
    assert outcomes == [{"status": "applied", "n": 13}, {"status": "ignored", "n": 26}]
    series = await db.query(
        "SELECT n.fy, n.seq, n.number, p.period FROM invoice_numbers n JOIN billing_periods p ON p.invoice_id ="
        " n.invoice_id WHERE n.branch_id = ? ORDER BY n.seq", (busy.branch_id,))
    assert [r["seq"] for r in series] == list(range(1, 11))  # issued in FY 2026-27 (Nov 2026 onwards)
    assert sorted(r["period"] for r in series) == PERIODS
    assert len({r["number"] for r in series}) == 10
    for t in others:
        rows = await db.query("SELECT i.amount_total, n.number FROM invoices i JOIN invoice_numbers n"
                              " ON n.invoice_id = i.id WHERE i.branch_id = ?", (t.branch_id,))
        assert len(rows) == 1
        assert rows[0]["amount_total"] == 4.72
        assert rows[0]["number"].endswith("/0001")
    assert await db.query("SELECT count(*) AS n FROM audit_logs WHERE event_type = 'invoice.issued'") == [{"n": 13}]


async def record_notifications(db: Database, tenants: list[Tenant], stop: asyncio.Event, rng: random.Random,
                               recorded: list[str]) -> None:
    """Keep recording notifications dated anywhere in January-October (late arrivals) until told to stop."""
    start = int(period_bounds("2026-01", tz_of({}))[0].timestamp() * 1000)
    end = int(period_bounds("2026-10", tz_of({}))[1].timestamp() * 1000)
    while not stop.is_set():
        t = rng.choice(tenants)
        nid = new_id("ntf")
        await db.batch([Statement(
            "INSERT INTO notifications (id, branch_id, project_id, type, channel, cost, billed, created_at)"
            " VALUES (?, ?, ?, 'photos_ready', 'whatsapp', ?, 0, ?)",
            (nid, t.branch_id, t.project_id, rng.choice((0.11, 0.35, 0.79, 1.05)), rng.randrange(start, end)),
        )])
        recorded.append(nid)
        await asyncio.sleep(0)


async def test_notification_cost_is_conserved_while_notifications_race_with_billing(pipeline: Pipeline) -> None:
    db = pipeline.db
    tenants = [await make_tenant(db, org_config={"billing": {"included_notification_spend": "0"}})
               for _ in range(2)]
    rng = random.Random(11)  # noqa: S311 - reproducible test data, not secrets
    recorded: list[str] = []
    stop = asyncio.Event()
    warmup = asyncio.Event()
    warmup.set()
    await record_notifications(db, tenants, warmup, rng, recorded)  # one before anything runs
    recorder = asyncio.create_task(record_notifications(db, tenants, stop, rng, recorded))
    for _ in range(3):
        await pipeline.start_worker(router_path=ROUTER, **WORKER)
    for period in PERIODS:
        for t in tenants:
            await publish_close(pipeline, t.org_id, period, 0)
            await publish_close(pipeline, t.org_id, period, 1)
    await pipeline.settle(within=60)
    stop.set()
    await recorder

    assert len(recorded) > 20  # the recorder really ran alongside billing
    billed = await db.query("SELECT n.id, n.cost, n.created_at, b.invoice_id, p.period_end FROM notifications n"
                            " JOIN billed_notifications b ON b.notification_id = n.id"
                            " JOIN billing_periods p ON p.org_id = b.org_id AND p.period = b.period")
    flagged = await db.query("SELECT count(*) AS n FROM notifications WHERE billed = 1")
    assert flagged == [{"n": len(billed)}]  # every row marked billed was billed by exactly one close
    assert all(r["created_at"] < r["period_end"] for r in billed)
    by_invoice: dict[str, int] = defaultdict(int)
    for r in billed:
        by_invoice[r["invoice_id"]] += round(r["cost"] * 100)
    invoices = await db.query("SELECT id, tax_json FROM invoices WHERE invoice_type = 'overage'")
    on_invoices = {r["id"]: round(float(json.loads(r["tax_json"])["notifications"]["cost"]) * 100) for r in invoices}
    assert on_invoices == dict(by_invoice)  # per invoice: the cost it states is the cost of the rows it billed
    assert sum(on_invoices.values()) == sum(round(r["cost"] * 100) for r in billed)
    closes = await db.query("SELECT count(*) AS n, sum(notification_count) AS k FROM billing_periods")
    assert closes == [{"n": 20, "k": len(billed)}]
    inbox = await db.query("SELECT status, count(*) AS n FROM event_inbox GROUP BY status ORDER BY status")
    assert inbox == [{"status": "applied", "n": 20}, {"status": "ignored", "n": 20}]


async def test_a_seeded_period_is_billed_for_every_org_through_the_workers(pipeline: Pipeline) -> None:
    """The benchmark's path at small scale: bulk seed, publish the period, workers bill every org."""
    spec = SeedSpec(orgs=40, media=4_000, notifications=400, max_media_bytes=128 * 1024**2)
    seeded = seed_sqlite_file(pipeline.db.path, spec)  # type: ignore[attr-defined]
    for _ in range(2):
        await pipeline.start_worker(router_path=ROUTER, **WORKER)
    result = await publish_period_closes(pipeline.db, pipeline.publisher, datetime.fromisoformat(
        "2026-11-01T00:00:00+05:30"), period="2026-10")
    assert (result.examined, result.published) == (40, 40)
    await pipeline.settle(within=60)

    totals = (await pipeline.db.query(
        "SELECT count(*) AS n, sum(storage_bytes) AS bytes, sum(activated_projects) AS projects,"
        " sum(notification_count) AS notes, count(invoice_id) AS invoices FROM billing_periods"))[0]
    assert (totals["n"], totals["bytes"], totals["projects"], totals["notes"]) == (40, seeded.storage_bytes, 40, 400)
    billed = await pipeline.db.query("SELECT sum(CAST(round(cost * 100) AS INTEGER)) AS paise FROM notifications"
                                     " WHERE billed = 1")
    assert billed == [{"paise": seeded.notification_paise}]
    numbers = await pipeline.db.query("SELECT DISTINCT number FROM invoice_numbers")
    assert numbers == [{"number": "BLR-2627/0001"}]  # each org's first invoice on its own branch
    assert totals["invoices"] == (await pipeline.db.query("SELECT count(*) AS n FROM invoice_numbers"))[0]["n"]
