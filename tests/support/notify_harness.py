"""Drive `notification.due` events through the real unit of work (`workers.apply.apply_event`, the arq job
function) with an injected clock, the real database adapters, real Redis and the fake providers."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from arq import Retry
from arq.connections import ArqRedis

from bootstrap.senders import build_senders
from config import NotifySettings
from events import inbox
from events.envelope import Envelope, envelope_for
from events.ids import new_id
from events.notifications import Channel, NotificationDue, notification_dedupe_key
from events.publish import Publisher
from handlers.base import NotifyServices, Services
from handlers.routes import ROUTER
from jobqueue.arq_redis import ArqQueue
from providers.ratelimit import RedisFixedWindow
from store import Database
from tests.support.factories import Tenant
from tests.support.pipeline import fast_settings
from workers.apply import apply_event
from workers.deps import Deps
from workers.policy import Backoff

PHONE_ID = "106540352242922"
WA_TOKEN = "wa-test-token"
SMS_KEY = "msg91-test-authkey"
EMAIL_KEY = "re_test_key"
SMS_TEMPLATES = {"invoice_due": "6650a1b2c3d4e5f6a7b8c9d0", "booking_confirmed": "6650a1b2c3d4e5f6a7b8c9d1",
                 "photos_ready": "6650a1b2c3d4e5f6a7b8c9d2"}


def notify_env(base_url: str) -> dict[str, str]:
    """The `SV_` variables that point every provider at the fake servers."""
    return {
        "SV_WHATSAPP_BASE_URL": base_url, "SV_WHATSAPP_PHONE_NUMBER_ID": PHONE_ID, "SV_WHATSAPP_TOKEN": WA_TOKEN,
        "SV_MSG91_BASE_URL": base_url, "SV_MSG91_AUTHKEY": SMS_KEY,
        "SV_MSG91_TEMPLATE_IDS": '{"invoice_due": "6650a1b2c3d4e5f6a7b8c9d0",'
                                 ' "booking_confirmed": "6650a1b2c3d4e5f6a7b8c9d1",'
                                 ' "photos_ready": "6650a1b2c3d4e5f6a7b8c9d2"}',
        "SV_EMAIL_BASE_URL": base_url, "SV_EMAIL_API_KEY": EMAIL_KEY, "SV_NOTIFY_TIMEOUT_S": "2",
    }


def notify_fields(base_url: str, **overrides: Any) -> dict[str, Any]:
    """The notification settings (flat field names) that point every provider at the fake servers."""
    values: dict[str, Any] = {
        "whatsapp_base_url": base_url, "whatsapp_phone_number_id": PHONE_ID, "whatsapp_token": WA_TOKEN,
        "msg91_base_url": base_url, "msg91_authkey": SMS_KEY, "msg91_template_ids": SMS_TEMPLATES,
        "email_base_url": base_url, "email_api_key": EMAIL_KEY, "notify_timeout_s": 2.0,
    }
    values.update(overrides)
    return values


def notify_settings(base_url: str, **overrides: Any) -> NotifySettings:
    return NotifySettings(**notify_fields(base_url, **overrides))


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Harness:
    deps: Deps
    clock: Clock
    retries: list[float] = field(default_factory=list)  # seconds each Retry asked to wait

    async def publish(self, tenant: Tenant, kind: str = "invoice_due", *, channel: Channel | None = None,
                      urgent: bool = False, notification_id: str | None = None, branch_id: str | None = None,
                      dedupe_key: str | None = None) -> Envelope:
        """Record a NotificationDue in the inbox (as a producer would) and return its envelope."""
        notification_id = notification_id or new_id("ntf")
        event = NotificationDue(notification_id=notification_id, kind=kind, project_id=tenant.project_id,
                                invoice_id=tenant.invoice_id if kind == "invoice_due" else None, channel=channel,
                                urgent=urgent)
        env = envelope_for(event, org_id=tenant.org_id, branch_id=branch_id or tenant.branch_id,
                           dedupe_key=dedupe_key or notification_dedupe_key(kind, notification_id),
                           occurred_at=self.clock.now)
        await self.deps.db.batch([inbox.insert(env, self.clock.now)])
        return env

    async def apply(self, env: Envelope, attempt: int = 1) -> str:
        """One delivery of the job. A Retry (retry or deferral) is returned as "retry" and its wait kept."""
        ctx = {"deps": self.deps, "job_try": attempt, "job_id": env.event_id}
        try:
            return await apply_event(ctx, env.model_dump_json())
        except Retry as retry:
            self.retries.append((retry.defer_score or 0) / 1000)
            return "retry"

    async def run(self, env: Envelope, max_deliveries: int = 20) -> str:
        """Deliver until the event settles, moving the injected clock forward by each requested wait."""
        for attempt in range(1, max_deliveries + 1):
            outcome = await self.apply(env, attempt)
            if outcome != "retry":
                return outcome
            self.clock.advance(self.retries[-1])
        raise AssertionError(f"{env.event_id} did not settle in {max_deliveries} deliveries")


async def make_harness(db: Database, redis: ArqRedis, http: httpx.AsyncClient, base_url: str, clock: Clock,
                       **settings_overrides: Any) -> Harness:
    settings = fast_settings("sqlite:///unused.db", "redis://unused", max_attempts=8)
    queue = ArqQueue(redis, settings.queue.queue_name)
    nsettings = notify_settings(base_url, **settings_overrides)
    services = Services(notify=NotifyServices(
        build_senders(nsettings, http), RedisFixedWindow(redis), nsettings.notify_rate_per_minute,
        billable_on=nsettings.billable_on, status_unknown_grace_s=nsettings.status_unknown_grace_s,
        fallback_grace_s=nsettings.fallback_grace_s, max_attempts=settings.worker.max_attempts))
    deps = Deps(settings=settings, db=db, queue=queue, publisher=Publisher(db, queue, clock), router=ROUTER,
                clock=clock, backoff=Backoff(settings.worker.backoff_base, settings.worker.backoff_cap),
                services=services)
    return Harness(deps, clock)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def utc(ms_value: int) -> datetime:
    return datetime.fromtimestamp(ms_value / 1000, UTC)
