"""The period-close producer: which org closes which month when (clock injected), its dedupe, the cron
through a real worker (the CLI command: tests/process/test_cli_billing.py)."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime

import pytest

from bootstrap.worker import worker_settings
from config import Settings
from events.billing import BillingPeriodClosed
from events.ids import new_id
from producers.billing_close import close_envelope, publish_period_closes
from store import Database, Statement
from tests.support.factories import make_tenant
from tests.support.pipeline import Pipeline
from workers.crons import billing_close_cron, cron_jobs


def at(iso: str) -> datetime:
    return datetime.fromisoformat(iso)


def ms(iso: str) -> int:
    return int(at(iso).timestamp() * 1000)


CREATED = ms("2026-01-01T00:00:00+00:00")


@pytest.mark.parametrize(
    ("config", "created", "now", "period", "expected"),
    [
        ({}, CREATED, "2026-10-31T18:29:59+00:00", None, "2026-09"),
        ({}, CREATED, "2026-10-31T18:30:00+00:00", None, "2026-10"),  # midnight in Kolkata
        ({"timezone": "America/New_York"}, CREATED, "2026-10-31T18:30:00+00:00", None, "2026-09"),
        ({"timezone": "America/New_York"}, CREATED, "2026-11-01T04:00:00+00:00", None, "2026-10"),
        ({"timezone": "Mars/Olympus"}, CREATED, "2026-10-31T18:30:00+00:00", None, "2026-10"),  # default zone
        ({}, ms("2026-11-02T00:00:00+00:00"), "2026-12-05T00:00:00+00:00", "2026-10", "too_new"),
        ({}, CREATED, "2026-10-20T00:00:00+00:00", "2026-10", "not_ended"),
        ({}, CREATED, "2026-12-05T00:00:00+00:00", "2026-03", "2026-03"),  # any past period, on demand
    ],
)
def test_close_envelope_names_the_month_that_ended_in_the_orgs_zone(
    config: dict[str, str], created: int, now: str, period: str | None, expected: str
) -> None:
    org = {"id": new_id("org"), "config_json": json.dumps(config), "created_at": created}
    planned = close_envelope(org, at(now), period)
    if expected in ("too_new", "not_ended"):
        assert planned == expected
        return
    assert not isinstance(planned, str)
    assert planned.dedupe_key == f"billing:{org['id']}:{expected}"
    assert (planned.type, planned.org_id, planned.payload["period"]) == ("billing.period_closed", org["id"], expected)


async def make_org(db: Database, timezone: str | None = None, created: int = CREATED) -> str:
    t = await make_tenant(db, org_config={"timezone": timezone} if timezone else {})
    await db.batch([Statement("UPDATE organizations SET created_at = ?, version = version + 1 WHERE id = ?",
                              (created, t.org_id))])
    return t.org_id


async def inbox_keys(db: Database) -> list[str]:
    return [str(r["dedupe_key"]) for r in await db.query("SELECT dedupe_key FROM event_inbox ORDER BY dedupe_key")]


async def test_each_org_is_published_once_per_month_as_its_zone_reaches_midnight(pipeline: Pipeline) -> None:
    db = pipeline.db
    ist = await make_org(db)
    nyc = await make_org(db, "America/New_York")
    await make_org(db, created=ms("2026-11-05T00:00:00+00:00"))  # too new for September and October

    first = await publish_period_closes(db, pipeline.publisher, at("2026-10-31T18:30:00+00:00"))
    assert (first.examined, first.published, first.too_new) == (3, 2, 1)
    again = await publish_period_closes(db, pipeline.publisher, at("2026-10-31T19:05:00+00:00"))
    assert (again.published, again.already) == (0, 2)
    later = await publish_period_closes(db, pipeline.publisher, at("2026-11-01T04:05:00+00:00"))
    assert (later.published, later.already) == (1, 1)
    assert await inbox_keys(db) == sorted([f"billing:{ist}:2026-10", f"billing:{nyc}:2026-09",
                                           f"billing:{nyc}:2026-10"])
    assert await pipeline.queue.depth() == 3


def test_the_close_cron_is_scheduled_hourly_on_the_days_months_end() -> None:
    (job,) = [j for j in cron_jobs(Settings()) if j.name == "billing_close"]
    assert job.day == {28, 29, 30, 31, 1, 2}
    assert job.minute == {5}
    assert job.unique
    assert job.timeout_s is not None
    assert job.timeout_s <= 120  # never raises arq's crash-recovery delay (largest timeout + 10 s)
    assert "billing_close" in {j.name for j in worker_settings(Settings())["cron_jobs"]}


async def test_the_cron_publishes_and_the_workers_bill_with_an_injected_clock(pipeline: Pipeline) -> None:
    db = pipeline.db
    t = await make_tenant(db, org_config={"billing": {"included_storage_bytes": 0}})
    await db.batch([Statement(
        "INSERT INTO media_objects (id, project_id, branch_id, path, size_bytes) VALUES (?, ?, ?, ?, ?)",
        (new_id("med"), t.project_id, t.branch_id, "k", 1024**3),
    )])
    clock = at("2026-11-01T06:05:00+00:00")
    worker = await pipeline.start_worker(router_path="handlers.routes:ROUTER",
                                         customize=lambda d: dataclasses.replace(d, clock=lambda: clock))
    await pipeline.wait_for(lambda: _has_deps(worker.ctx), what="worker start-up")
    assert await billing_close_cron(worker.ctx) == 1
    await pipeline.settle()
    rows = await db.query("SELECT i.amount_total, n.number FROM invoices i JOIN invoice_numbers n"
                          " ON n.invoice_id = i.id WHERE i.branch_id = ?", (t.branch_id,))
    assert rows == [{"amount_total": 4.72, "number": "BLR-2627/0001"}]
    assert await billing_close_cron(worker.ctx) == 0  # the next hour's run finds it published


async def _has_deps(ctx: dict[str, object]) -> bool:
    return "deps" in ctx


async def test_a_worker_that_cannot_apply_billing_events_publishes_none(pipeline: Pipeline) -> None:
    await make_org(pipeline.db)
    worker = await pipeline.start_worker()  # the tests' sample router: no billing handler
    await pipeline.wait_for(lambda: _has_deps(worker.ctx), what="worker start-up")
    assert BillingPeriodClosed not in worker.ctx["deps"].router.handlers
    assert await billing_close_cron(worker.ctx) == 0
    assert await inbox_keys(pipeline.db) == []
