"""Scheduled jobs beyond the re-drive (billing, due-date reminders). Each must be idempotent: arq's
unique crons can still run twice with several workers (arq issue #196)."""

from __future__ import annotations

from arq.cron import CronJob, cron

from handlers.invoice_reminders import invoice_due_cron
from workers.billing_close import billing_cron_job

SCHEDULE: list[CronJob] = []
SCHEDULE.append(billing_cron_job())  # issue 7: period close, one BillingPeriodClosed per org
# issue 6: invoice_due reminders, daily at 03:30 UTC (09:00 IST), once per invoice and due date. No own
# timeout: the worker's job_timeout applies, so a killed worker's jobs are not held back any longer.
SCHEDULE.append(cron(invoice_due_cron, name="invoice_due", hour={3}, minute={30}, unique=True))
