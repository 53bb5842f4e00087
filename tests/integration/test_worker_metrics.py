"""The unit of work's counters on the real parts (SQLite and D1, real Redis, the fake WhatsApp API),
time from an injected clock: a notification deferred through quiet hours is counted `deferred`, then
`applied`, and its end-to-end latency runs from the end of the quiet hours, not from its receipt."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from arq.connections import ArqRedis

from events import inbox
from events.envelope import envelope_for
from events.ids import new_id
from events.notifications import NotificationDue, notification_dedupe_key
from handlers.routes import ROUTER
from observability.metrics import WorkerMetrics
from store import Database
from tests.support.factories import make_tenant
from tests.support.metrics import Scrape
from tests.support.notify_harness import Clock, make_harness, utc
from tests.support.provider_servers import ProviderServers

ELEVEN_PM_IST = 1_790_011_800_000  # 2026-09-21 23:00 Asia/Kolkata, inside the default quiet hours
NINE_AM_IST = 1_790_047_800_000  # 2026-09-22 09:00, when they end


async def test_a_quiet_hours_deferral_is_counted_and_latency_runs_from_their_end(
    db: Database, arq_redis: ArqRedis, servers: ProviderServers,
) -> None:
    servers.reset()
    clock = Clock(utc(ELEVEN_PM_IST))
    async with httpx.AsyncClient() as http:
        h = await make_harness(db, arq_redis, http, servers.url, clock)
        h.deps = dataclasses.replace(h.deps, metrics=WorkerMetrics(ROUTER.event_types))
        t = await make_tenant(db)
        ntf = new_id("ntf")
        event = NotificationDue(notification_id=ntf, kind="booking_confirmed", project_id=t.project_id)
        env = envelope_for(event, org_id=t.org_id, branch_id=t.branch_id, received_at=clock.now,
                           dedupe_key=notification_dedupe_key("booking_confirmed", ntf))
        await db.batch([inbox.insert(env, clock.now)])
        assert await h.run(env) == "applied"
    assert clock.now == utc(NINE_AM_IST)  # it waited for 09:00
    assert len(servers.requests) == 1
    scrape = Scrape(h.deps.metrics.exposition().decode())
    assert scrape.value("studiovault_events_total", type="notification.due", outcome="deferred") == 1
    assert scrape.value("studiovault_events_total", type="notification.due", outcome="applied") == 1
    assert scrape.value("studiovault_event_apply_duration_seconds_count", type="notification.due") == 2
    # Received at 23:00, sent at 09:00 as planned: no latency (10 hours, were it measured from receipt).
    assert scrape.value("studiovault_event_end_to_end_seconds_count", type="notification.due") == 1
    assert scrape.value("studiovault_event_end_to_end_seconds_sum", type="notification.due") == 0
    assert scrape.value("studiovault_notification_sends_total", channel="whatsapp", outcome="sent") == 0  # bare senders
    # WhatsApp is billed on delivery (SV_BILLABLE_ON): the send alone makes nothing billable yet.
    assert scrape.value("studiovault_notification_cost_paise_total", channel="whatsapp") == 0


async def test_end_to_end_latency_counts_retries_from_the_receipt(
    db: Database, arq_redis: ArqRedis, servers: ProviderServers,
) -> None:
    """Backoff is latency: a message refused twice with 503 and sent on the third try is timed from its
    receipt (urgent: quiet hours do not apply)."""
    from tests.support.provider_servers import Scripted  # noqa: PLC0415

    servers.reset()
    servers.script("whatsapp", Scripted(503, {}), Scripted(503, {}))
    clock = Clock(datetime(2026, 9, 21, 6, 0, tzinfo=UTC))  # 11:30 IST
    async with httpx.AsyncClient() as http:
        h = await make_harness(db, arq_redis, http, servers.url, clock)
        h.deps = dataclasses.replace(h.deps, metrics=WorkerMetrics(ROUTER.event_types))
        t = await make_tenant(db)
        ntf = new_id("ntf")
        event = NotificationDue(notification_id=ntf, kind="booking_confirmed", project_id=t.project_id,
                                urgent=True)
        received = clock.now
        env = envelope_for(event, org_id=t.org_id, branch_id=t.branch_id, received_at=received,
                           dedupe_key=notification_dedupe_key("booking_confirmed", ntf))
        await db.batch([inbox.insert(env, clock.now)])
        assert await h.run(env) == "applied"
    waited = (clock.now - received).total_seconds()
    assert waited > 0
    scrape = Scrape(h.deps.metrics.exposition().decode())
    assert scrape.value("studiovault_events_total", type="notification.due", outcome="retry") == 2
    assert scrape.value("studiovault_event_end_to_end_seconds_sum", type="notification.due") == pytest.approx(
        waited, abs=timedelta(milliseconds=1).total_seconds())
