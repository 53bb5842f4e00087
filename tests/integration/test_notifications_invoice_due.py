"""The daily `invoice_due` producer: once per invoice and due date, only for issued invoices reaching it."""

from __future__ import annotations

import json

from arq.connections import ArqRedis

from config import Settings
from events.publish import Publisher
from jobqueue.arq_redis import ArqQueue
from producers.invoice_reminders import publish_invoice_due
from store import Database, Statement
from tests.support.factories import NOW_MS, make_tenant
from tests.support.notify_harness import utc
from workers.crons import cron_jobs

DAY = 86_400_000


async def reminders(db: Database) -> list[dict[str, object]]:
    rows = await db.query("SELECT dedupe_key, payload_json FROM event_inbox WHERE type = 'notification.due'"
                          " ORDER BY created_at, dedupe_key")
    return [{"dedupe_key": r["dedupe_key"], **json.loads(str(r["payload_json"]))["payload"]} for r in rows]


async def test_each_issued_invoice_reaching_its_due_date_gets_one_reminder_per_due_date(
    db: Database, arq_redis: ArqRedis
) -> None:
    publisher = Publisher(db, ArqQueue(arq_redis, "test:events"))
    now = utc(NOW_MS)
    due_today = await make_tenant(db, due_at=NOW_MS + 3_600_000)  # in an hour
    overdue = await make_tenant(db, due_at=NOW_MS - 2 * DAY)  # missed by a cron outage: caught up
    await make_tenant(db, due_at=NOW_MS + 3 * DAY)  # not yet
    await make_tenant(db, due_at=NOW_MS - 30 * DAY)  # long past: not spammed
    await make_tenant(db, due_at=NOW_MS, invoice_status="paid")
    await make_tenant(db, due_at=NOW_MS, invoice_status="draft")
    await make_tenant(db, due_at=None)

    assert await publish_invoice_due(db, publisher, now) == (2, 2)
    assert await publish_invoice_due(db, publisher, now) == (2, 0)  # a second run (or a second worker)
    published = await reminders(db)
    assert sorted((r["dedupe_key"], r["invoice_id"], r["project_id"], r["kind"]) for r in published) == sorted([
        (f"notify:invoice_due:{due_today.invoice_id}:{NOW_MS + 3_600_000}", due_today.invoice_id,
         due_today.project_id, "invoice_due"),
        (f"notify:invoice_due:{overdue.invoice_id}:{NOW_MS - 2 * DAY}", overdue.invoice_id, overdue.project_id,
         "invoice_due"),
    ])
    assert await arq_redis.zcard("test:events") == 2  # enqueued once each

    # The due date moves: a new reminder for the new date.
    await db.batch([Statement("UPDATE invoices SET due_at = ?, version = version + 1 WHERE id = ?",
                              (NOW_MS + 7_200_000, due_today.invoice_id))])
    assert await publish_invoice_due(db, publisher, now) == (2, 1)


def test_the_invoice_due_cron_runs_daily_at_09_00_ist() -> None:
    (job,) = [j for j in cron_jobs(Settings()) if j.name == "invoice_due"]
    assert (job.hour, job.minute, job.unique) == ({3}, {30}, True)
    assert job.timeout_s is None  # the worker's job_timeout: a killed worker's jobs are not held back longer
