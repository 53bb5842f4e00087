"""The scheduled jobs, as arq crons around the producers. Each is idempotent: arq's unique crons can
still run twice with several workers (arq #196).

- `redrive` every `SV_REDRIVE_EVERY_MINUTES` (and at start-up): re-enqueue pending inbox rows;
- `billing_close` hourly on UTC days 28-2: every zone's month end falls in them (UTC+14 to UTC-12),
  plus a day's grace; one `BillingPeriodClosed` per org;
- `invoice_due` daily at 03:30 UTC (09:00 IST): reminders, once per invoice and due date;
- `reconcile` hourly at `SV_RECONCILE_CRON_MINUTE`: each connected gateway account, least recently
  reconciled first, as many as fit in the job's time; the rest on the next tick (checkpoints).

arq re-runs a killed worker's jobs only after the LARGEST function timeout + 10 s, so every cron's
timeout is at most `SV_JOB_TIMEOUT`; a run cut short resumes on the next tick (dedupe keys skip what
was published).
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any, cast

import structlog
from arq import cron
from arq.cron import CronJob

from config import Settings
from events.billing import BillingPeriodClosed
from events.notifications import NotificationDue
from gateways.accounts import UndecryptableCredentials
from producers.billing_close import publish_period_closes
from producers.invoice_reminders import publish_invoice_due
from producers.reconcile import Reconciler, Window
from producers.redrive import redrive
from workers.deps import JobContext

log = structlog.get_logger("studiovault.crons")


async def redrive_cron(ctx: dict[Any, Any]) -> int:
    deps = cast(JobContext, ctx)["deps"]
    _, enqueued = await redrive(deps.db, deps.queue, deps.clock(),
                                timedelta(seconds=deps.settings.worker.redrive_grace))
    return enqueued


async def billing_close_cron(ctx: dict[Any, Any]) -> int:
    """A worker whose routing table cannot apply billing events (a test's own router) publishes none."""
    deps = cast(JobContext, ctx)["deps"]
    if BillingPeriodClosed not in deps.router.handlers or not deps.settings.billing.billing_cron_enabled:
        return 0
    result = await publish_period_closes(deps.db, deps.publisher, deps.clock(), settings=deps.settings.billing)
    return result.published


async def invoice_due_cron(ctx: dict[Any, Any]) -> int:
    """A worker whose routing table cannot apply notifications (a test's own router) publishes none."""
    deps = cast(JobContext, ctx)["deps"]
    if NotificationDue not in deps.router.handlers:
        return 0
    _, published = await publish_invoice_due(deps.db, deps.publisher, deps.clock())
    return published


MIN_ACCOUNT_SHARE_S = 2.0


async def reconcile_cron(ctx: dict[Any, Any]) -> int:
    """Reconcile connected accounts within the job's time budget; returns the facts published."""
    deps = cast(JobContext, ctx)["deps"]
    cfg = deps.settings.gateways
    if deps.accounts is None or deps.gateway_api is None or not cfg.reconcile_cron_enabled:
        return 0
    budget = deps.settings.worker.job_timeout * 0.6
    started = time.monotonic()
    try:
        accounts = sorted(await deps.accounts.list(active_only=True), key=lambda a: a.reconciled_until or 0)
        platform = await deps.accounts.platform("stripe")
    except UndecryptableCredentials as exc:
        log.error("reconcile_skipped", error=str(exc))  # noqa: TRY400 - a configuration problem, no traceback
        return 0
    window = Window(cfg.reconcile_overlap_s, cfg.reconcile_first_lookback_s)
    published = 0
    for left, account in zip(range(len(accounts), 0, -1), accounts, strict=True):
        remaining = budget - (time.monotonic() - started)
        if remaining <= 0:
            break  # the rest have newer checkpoints: they come first at the next tick
        # A fair share of what is left: one slow account (its checkpoint unmoved, so first again next
        # tick) cannot starve the others.
        share = min(remaining, max(remaining / left, MIN_ACCOUNT_SHARE_S))
        reconciler = Reconciler(deps.db, deps.publisher, deps.gateway_api, store=deps.accounts, account=account,
                                now=deps.clock(), window=window)
        try:
            async with asyncio.timeout(share):
                published += (await reconciler.run(platform)).published
        except TimeoutError:
            log.warning("reconcile_account_timed_out", gateway=account.gateway, account_id=account.account_ref,
                        org_id=account.org_id, after_s=round(share, 1),
                        action="its checkpoint did not move; `studiovault reconcile` has no time limit")
    return published


def cron_jobs(settings: Settings) -> list[CronJob]:
    """The worker's scheduled jobs: always the re-drive; the rest unless `SV_SCHEDULED_JOBS=false`."""
    timeout = settings.worker.job_timeout
    every = settings.worker.redrive_every_minutes
    jobs = [cron(redrive_cron, minute=set(range(0, 60, every)), run_at_startup=True, unique=True,
                 timeout=timeout)]
    if settings.worker.scheduled_jobs:
        jobs += [
            cron(billing_close_cron, name="billing_close", day={28, 29, 30, 31, 1, 2},
                 minute={settings.billing.billing_cron_minute}, unique=True, timeout=timeout),
            cron(invoice_due_cron, name="invoice_due", hour={3}, minute={30}, unique=True),  # job_timeout applies
            cron(reconcile_cron, name="reconcile", minute={settings.gateways.reconcile_cron_minute}, unique=True,
                 timeout=timeout),
        ]
    return jobs
