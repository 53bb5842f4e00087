"""The billing handler on both adapters: one overage invoice per org and period, priced by hand."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from events.ids import new_id
from handlers.audit import system_user_id
from handlers.base import Defer, Rejected
from store import Database, Statement, VersionConflict
from tests.support.billing_seed import apply_close, close_event, commit_close, prepare_close
from tests.support.factories import Tenant, make_tenant

GIB = 1024**3
MIB = 1024**2
NOW = datetime.fromisoformat("2026-11-01T06:00:00+00:00")  # 11:30 IST, 1 November 2026 (FY 2026-27)
OVERRIDES = {"included_storage_bytes": GIB, "included_projects": 0, "included_notification_spend": "1.00"}


def at(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


async def add_project(db: Database, t: Tenant, activated_at: int | None) -> str:
    project = new_id("prj")
    await db.batch([Statement(
        "INSERT INTO projects (id, branch_id, client_id, status, activated_at, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (project, t.branch_id, t.client_id, "active", activated_at, at("2026-09-01T00:00:00+00:00")),
    )])
    return project


async def add_media(db: Database, t: Tenant, size: int) -> None:
    await db.batch([Statement(
        "INSERT INTO media_objects (id, project_id, branch_id, path, file_type, size_bytes) VALUES (?, ?, ?, ?, ?, ?)",
        (new_id("med"), t.project_id, t.branch_id, f"{t.org_id}/{new_id('med')}", "raw", size),
    )])


async def add_notification(db: Database, t: Tenant, cost: float, created_at: int, *, billed: int = 0,
                           branch_id: str | None = None) -> str:
    nid = new_id("ntf")
    await db.batch([Statement(
        "INSERT INTO notifications (id, branch_id, project_id, type, channel, cost, billed, created_at)"
        " VALUES (?, ?, ?, 'invoice_due', 'whatsapp', ?, ?, ?)",
        (nid, branch_id or t.branch_id, t.project_id, cost, billed, created_at),
    )])
    return nid


async def october_usage(db: Database, t: Tenant) -> dict[str, str]:
    """2 GiB stored, 1 project activated in October (IST), 4 unbilled notifications worth 1.60 before its end."""
    for size in (GIB, 512 * MIB, 512 * MIB):
        await add_media(db, t, size)
    await add_project(db, t, at("2026-10-15T10:00:00+05:30"))
    await add_project(db, t, at("2026-09-30T23:30:00+05:30"))  # September in IST
    await add_project(db, t, at("2026-11-01T00:00:00+05:30"))  # the period's end is exclusive
    return {
        "oct5": await add_notification(db, t, 0.35, at("2026-10-05T09:00:00+05:30")),
        "oct20": await add_notification(db, t, 0.79, at("2026-10-20T09:00:00+05:30")),
        "oct31": await add_notification(db, t, 0.11, at("2026-10-31T23:59:59+05:30")),
        "sep_unbilled": await add_notification(db, t, 0.35, at("2026-09-10T09:00:00+05:30")),
        "already_billed": await add_notification(db, t, 0.79, at("2026-10-10T09:00:00+05:30"), billed=1),
        "november": await add_notification(db, t, 0.35, at("2026-11-01T00:00:00+05:30")),
    }


async def invoices_of(db: Database, branch_id: str) -> list[dict[str, object]]:
    return await db.query(
        "SELECT i.*, n.number, n.fy, n.seq FROM invoices i JOIN invoice_numbers n ON n.invoice_id = i.id"
        " WHERE i.branch_id = ? AND i.invoice_type = 'overage' ORDER BY n.fy, n.seq", (branch_id,))


@pytest.mark.parametrize(
    ("place", "taxes", "total"),
    [
        # subtotal 4.00 + 99.00 + 0.60 = 103.60; 9% = 9.324 -> 9.32 twice; 103.60 + 18.64 = 122.24
        ("KA", [{"name": "CGST", "rate": "9", "amount": "9.32"}, {"name": "SGST", "rate": "9", "amount": "9.32"}],
         "122.24"),
        # 18% = 18.648 -> 18.65; 103.60 + 18.65 = 122.25
        ("MH", [{"name": "IGST", "rate": "18", "amount": "18.65"}], "122.25"),
    ],
    ids=["intra-state", "inter-state"],
)
async def test_closing_a_period_issues_one_priced_overage_invoice(
    db: Database, place: str, taxes: list[dict[str, str]], total: str
) -> None:
    t = await make_tenant(db, org_config={"state_code": place, "billing": OVERRIDES}, state_code="KA")
    ids = await october_usage(db, t)

    assert await apply_close(db, close_event(t.org_id, "2026-10"), NOW) == "applied"

    (invoice,) = await invoices_of(db, t.branch_id)
    assert (invoice["number"], invoice["fy"], invoice["seq"]) == ("BLR-2627/0001", "2026-27", 1)
    assert invoice["status"] == "issued"
    assert invoice["project_id"] is None
    assert invoice["amount_total"] == float(total)
    assert invoice["issued_at"] == at("2026-11-01T06:00:00+00:00")
    assert invoice["due_at"] == at("2026-11-16T06:00:00+00:00")  # 15 days, the default
    tax = json.loads(str(invoice["tax_json"]))
    assert [(ln["code"], ln["usage"], ln["billable"], ln["amount"]) for ln in tax["lines"]] == [
        ("storage", str(2 * GIB), str(GIB), "4.00"), ("projects", "1", "1", "99.00"),
        ("notifications", "1.60", "0.60", "0.60"),
    ]
    assert tax["subtotal"] == "103.60"
    assert tax["taxes"] == taxes
    assert tax["total"] == total
    assert (tax["supplier_state"], tax["place_of_supply"], tax["period"]) == ("KA", place, "2026-10")
    assert tax["notifications"] == {"count": 4, "cost": "1.60"}
    billed = {r["id"] for r in await db.query("SELECT id FROM notifications WHERE billed = 1")}
    assert billed == {ids["oct5"], ids["oct20"], ids["oct31"], ids["sep_unbilled"], ids["already_billed"]}
    links = await db.query("SELECT notification_id, invoice_id, period FROM billed_notifications")
    assert {r["notification_id"] for r in links} == billed - {ids["already_billed"]}
    assert {(r["invoice_id"], r["period"]) for r in links} == {(invoice["id"], "2026-10")}
    (audit,) = await db.query("SELECT * FROM audit_logs WHERE org_id = ?", (t.org_id,))
    assert audit["actor_user_id"] == system_user_id(t.org_id)
    assert (audit["event_type"], audit["branch_id"]) == ("invoice.issued", t.branch_id)
    assert json.loads(str(audit["payload_json"]))["number"] == "BLR-2627/0001"
    (closed,) = await db.query("SELECT * FROM billing_periods WHERE org_id = ?", (t.org_id,))
    assert (closed["invoice_id"], closed["storage_bytes"], closed["activated_projects"]) == (invoice["id"], 2 * GIB, 1)
    assert (closed["notification_count"], closed["notification_cost"]) == (4, 1.6)


async def test_nothing_to_bill_records_the_period_closed_without_an_invoice(db: Database) -> None:
    """Paid defaults: 200 GiB, 25 projects and ₹500 of notifications included."""
    t = await make_tenant(db)
    note = await add_notification(db, t, 0.35, at("2026-10-05T09:00:00+05:30"))
    assert await apply_close(db, close_event(t.org_id, "2026-10"), NOW) == "applied"
    assert await invoices_of(db, t.branch_id) == []
    (closed,) = await db.query("SELECT invoice_id, notification_cost FROM billing_periods WHERE org_id = ?",
                               (t.org_id,))
    assert closed == {"invoice_id": None, "notification_cost": 0.35}
    # within the allowance the notification is consumed by this close, not carried into the next
    assert (await db.query("SELECT billed FROM notifications WHERE id = ?", (note,)))[0]["billed"] == 1
    assert await db.query("SELECT count(*) AS n FROM audit_logs") == [{"n": 0}]


async def test_a_closed_period_closed_again_writes_nothing(db: Database) -> None:
    t = await make_tenant(db, org_config={"billing": OVERRIDES})
    await october_usage(db, t)
    assert await apply_close(db, close_event(t.org_id, "2026-10"), NOW) == "applied"
    late = await add_notification(db, t, 0.79, at("2026-10-30T09:00:00+05:30"))
    assert await apply_close(db, close_event(t.org_id, "2026-10"), NOW + timedelta(hours=1)) == "ignored"
    assert len(await invoices_of(db, t.branch_id)) == 1
    assert (await db.query("SELECT billed FROM notifications WHERE id = ?", (late,)))[0]["billed"] == 0
    assert await db.query("SELECT count(*) AS n FROM audit_logs") == [{"n": 1}]


async def test_numbers_run_consecutively_per_branch_and_restart_each_financial_year(db: Database) -> None:
    t = await make_tenant(db, org_config={"billing": {"included_storage_bytes": 0}})
    await add_media(db, t, GIB)  # 1 GiB at ₹4.00 every month
    closes = [("2027-01", "2027-02-01T06:00:00+00:00"), ("2027-02", "2027-03-01T06:00:00+00:00"),
              ("2027-03", "2027-04-01T06:00:00+00:00"), ("2027-04", "2027-05-01T06:00:00+00:00")]
    for period, now in closes:
        await apply_close(db, close_event(t.org_id, period), datetime.fromisoformat(now))
    numbers = [(r["number"], r["amount_total"]) for r in await invoices_of(db, t.branch_id)]
    assert numbers == [("BLR-2627/0001", 4.72), ("BLR-2627/0002", 4.72), ("BLR-2728/0001", 4.72),
                       ("BLR-2728/0002", 4.72)]


async def test_the_configured_billing_branch_issues_the_invoice(db: Database) -> None:
    t = await make_tenant(db, org_config={"billing": {"included_storage_bytes": 0}})
    mumbai = new_id("brn")
    await db.batch([Statement(
        "INSERT INTO branches (id, org_id, name, tax_json, invoice_prefix, created_at) VALUES (?, ?, ?, ?, ?, ?)",
        (mumbai, t.org_id, "Mumbai", '{"gstin": "27AAACB1234C1Z5"}', "MUM-", at("2026-01-01T00:00:00+00:00")),
    ), Statement("UPDATE organizations SET config_json = ?, version = version + 1 WHERE id = ?",
                 (json.dumps({"billing": {"included_storage_bytes": 0, "branch_id": mumbai, "due_days": 30}}),
                  t.org_id))])
    await add_media(db, t, GIB)  # stored under Bengaluru, billed by the org's billing branch in Mumbai
    await apply_close(db, close_event(t.org_id, "2026-10"), NOW)
    (invoice,) = await invoices_of(db, mumbai)
    assert invoice["number"] == "MUM-2627/0001"
    assert invoice["due_at"] == at("2026-12-01T06:00:00+00:00")
    tax = json.loads(str(invoice["tax_json"]))
    # supplier Mumbai (GSTIN 27 = MH), no place of supply on record: the supplier's state, so CGST + SGST
    assert (tax["supplier_state"], tax["supply"], invoice["amount_total"]) == ("MH", "intra_state", 4.72)


async def test_a_billing_branch_of_another_org_is_rejected_and_nothing_is_written(db: Database) -> None:
    other = await make_tenant(db)
    t = await make_tenant(db, org_config={"billing": {"included_storage_bytes": 0, "branch_id": other.branch_id}})
    await add_media(db, t, GIB)
    with pytest.raises(Rejected) as caught:
        await apply_close(db, close_event(t.org_id, "2026-10"), NOW)
    assert caught.value.reason == "wrong_tenant"
    assert await db.query("SELECT count(*) AS n FROM billing_periods") == [{"n": 0}]


async def test_an_event_under_another_orgs_envelope_or_branch_is_rejected(db: Database) -> None:
    t = await make_tenant(db)
    other = await make_tenant(db)
    with pytest.raises(Rejected, match="wrong_tenant"):
        await apply_close(db, close_event(t.org_id, "2026-10"), NOW, branch_id=other.branch_id)
    with pytest.raises(Rejected, match="wrong_tenant"):
        await apply_close(db, close_event(t.org_id, "2026-10"), NOW, envelope_org=other.org_id)
    assert await db.query("SELECT count(*) AS n FROM billing_periods") == [{"n": 0}]


async def test_instants_that_do_not_bound_the_named_month_are_rejected(db: Database) -> None:
    t = await make_tenant(db)
    event = close_event(t.org_id, "2026-10").model_copy(update={"period": "2026-09"})
    with pytest.raises(Rejected, match="invalid_period"):
        await apply_close(db, event, NOW)


async def test_a_period_that_has_not_ended_is_deferred_to_its_end(db: Database) -> None:
    t = await make_tenant(db)
    with pytest.raises(Defer) as caught:
        await apply_close(db, close_event(t.org_id, "2026-11"), NOW)
    assert caught.value.until == datetime.fromisoformat("2026-12-01T00:00:00+05:30")


async def test_a_notification_billed_elsewhere_after_the_read_aborts_the_batch(db: Database) -> None:
    t = await make_tenant(db)
    note = await add_notification(db, t, 0.35, at("2026-10-05T09:00:00+05:30"))
    envelope, plan = await prepare_close(db, close_event(t.org_id, "2026-10"), NOW)
    await db.batch([Statement("UPDATE notifications SET billed = 1 WHERE id = ?", (note,))])
    with pytest.raises(VersionConflict):
        await commit_close(db, envelope, plan, NOW)
    assert await db.query("SELECT count(*) AS n FROM billing_periods") == [{"n": 0}]
    assert await db.query("SELECT count(*) AS n FROM billed_notifications") == [{"n": 0}]


async def test_a_notification_recorded_after_the_read_is_left_for_the_next_close(db: Database) -> None:
    t = await make_tenant(db, org_config={"billing": {"included_notification_spend": "0"}})
    first = await add_notification(db, t, 0.35, at("2026-10-05T09:00:00+05:30"))
    envelope, plan = await prepare_close(db, close_event(t.org_id, "2026-10"), NOW)
    late = await add_notification(db, t, 0.79, at("2026-10-31T20:00:00+05:30"))  # recorded late, dated October
    await commit_close(db, envelope, plan, NOW)
    assert await db.query("SELECT id FROM notifications WHERE billed = 1") == [{"id": first}]
    await apply_close(db, close_event(t.org_id, "2026-11"), datetime.fromisoformat("2026-12-01T06:00:00+00:00"))
    links = await db.query("SELECT notification_id, period FROM billed_notifications ORDER BY period")
    assert [(r["notification_id"], r["period"]) for r in links] == [(first, "2026-10"), (late, "2026-11")]
    totals = [r["amount_total"] for r in await invoices_of(db, t.branch_id)]
    assert totals == [0.41, 0.93]  # 0.35 + 2 x 0.03 (9% of 0.35 = 0.0315); 0.79 + 2 x 0.07 (0.0711)


async def test_hundreds_of_notifications_are_billed_in_chunks_under_the_parameter_limit(db: Database) -> None:
    t = await make_tenant(db, org_config={"billing": {"included_notification_spend": "0"}})
    stamp = at("2026-10-05T09:00:00+05:30")
    rows = [(new_id("ntf"), t.branch_id, stamp) for _ in range(250)]
    await db.batch([Statement(
        "INSERT INTO notifications (id, branch_id, type, channel, cost, billed, created_at)"
        " VALUES " + ", ".join(["(?, ?, 'invoice_due', 'sms', 0.11, 0, ?)"] * len(chunk)),
        tuple(v for row in chunk for v in row),
    ) for chunk in (rows[i:i + 33] for i in range(0, len(rows), 33))])
    await apply_close(db, close_event(t.org_id, "2026-10"), NOW)
    assert await db.query("SELECT count(*) AS n FROM notifications WHERE billed = 1") == [{"n": 250}]
    (invoice,) = await invoices_of(db, t.branch_id)
    # 250 x 0.11 = 27.50; 9% = 2.475 -> 2.48 twice; 27.50 + 4.96 = 32.46
    assert invoice["amount_total"] == 32.46
