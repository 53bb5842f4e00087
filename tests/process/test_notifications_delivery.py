"""End to end: the real arq worker (in-process with an injected clock, and as `studiovault worker`
subprocesses SIGKILLed at failpoints), a real redis-server, a SQLite file and the fake providers."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from events.envelope import Envelope, envelope_for
from events.ids import new_id
from events.notifications import Channel, NotificationDue, notification_dedupe_key
from store.sqlite import SqliteDatabase
from tests.support.factories import Tenant, make_tenant
from tests.support.notify_harness import Clock, notify_env, notify_fields, utc
from tests.support.pipeline import Pipeline
from tests.support.processes import CLI, ROOT, pipeline_env
from tests.support.provider_servers import ProviderServers, Scripted, provider_servers

pytestmark = pytest.mark.slow

RATE_CARD = {"whatsapp": 0.35, "sms": 0.25, "email": 0.05}  # the documented defaults
# What a notification costs when recorded: SMS and e-mail are billable when accepted, WhatsApp only once
# a status webhook says delivered (SV_BILLABLE_ON), so it is recorded with cost 0 and a pending charge.
COST_AT_SEND = {"whatsapp": 0.0, "sms": 0.25, "email": 0.05}


@pytest.fixture
def servers() -> Iterator[ProviderServers]:
    with provider_servers() as running:
        yield running


def due(t: Tenant, kind: str, channel: Channel | None, notification_id: str | None = None,
        dedupe_key: str | None = None) -> Envelope:
    ntf = notification_id or new_id("ntf")
    event = NotificationDue(notification_id=ntf, kind=kind, project_id=t.project_id, channel=channel,
                            invoice_id=t.invoice_id if kind == "invoice_due" else None)
    return envelope_for(event, org_id=t.org_id, branch_id=t.branch_id,
                        dedupe_key=dedupe_key or notification_dedupe_key(kind, ntf))


async def test_a_notification_due_at_23_00_inside_quiet_hours_is_sent_at_09_00(
    pipeline: Pipeline, servers: ProviderServers
) -> None:
    pipeline.settings = pipeline.settings.replace(**notify_fields(servers.url))
    clock = Clock(utc(1_790_011_800_000))  # 2026-09-21 23:00 IST (17:30Z); quiet hours 21:00-09:00 by default
    t = await make_tenant(pipeline.db)
    env = due(t, "booking_confirmed", None)
    await pipeline.publisher.publish(env)
    await pipeline.start_worker("handlers.routes:ROUTER", customize=lambda d: dataclasses.replace(d, clock=clock))

    nine_am = 1_790_047_800_000  # 2026-09-22 09:00 IST = 03:30Z

    async def deferred() -> bool:
        rows = await pipeline.db.query("SELECT available_at, last_error FROM event_inbox WHERE id = ?",
                                       (env.event_id,))
        return rows == [{"available_at": nine_am, "last_error": "quiet_hours"}]

    await pipeline.wait_for(deferred, what="the event to be deferred to 09:00 branch time")
    assert servers.requests == []
    assert await pipeline.inbox_status(env.event_id) == "pending"

    # Ten hours pass: the injected clock moves to 09:00, and the job arq parked for 10 h of real time is
    # made due now (what its sorted-set score would say at 09:00).
    clock.now = utc(nine_am)
    await pipeline.redis.zadd(pipeline.settings.queue.queue_name, {env.event_id: int(time.time() * 1000)})
    await pipeline.settle()
    assert len(servers.requests) == 1
    assert await pipeline.db.query("SELECT channel, cost, created_at FROM notifications") == [
        {"channel": "whatsapp", "cost": COST_AT_SEND["whatsapp"], "created_at": nine_am}]


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([*CLI, "worker"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=out)


@pytest.mark.parametrize("crash_at", ["after_send", "after_batch"])
async def test_across_worker_kills_duplicates_and_a_5xx_storm_each_notification_is_accepted_once(
    crash_at: str, pipeline: Pipeline, servers: ProviderServers, redis_url: str, tmp_path: Path
) -> None:
    db = pipeline.db
    assert isinstance(db, SqliteDatabase)
    t = await make_tenant(db, org_config={"notifications": {"quiet_hours": None}})  # worker processes use real time
    wa, sms, email = due(t, "invoice_due", None), due(t, "booking_confirmed", "sms"), due(t, "photos_ready", "email")
    ntf = {ch: e.payload["notification_id"] for ch, e in (("whatsapp", wa), ("sms", sms), ("email", email))}
    servers.script("whatsapp", Scripted(503, {}))
    servers.script("sms", Scripted(500, {"type": "error", "message": "internal"}),
                   Scripted(429, {"type": "error", "message": "slow down"}, {"retry-after": "0"}))
    env = pipeline_env(f"sqlite:///{db.path}", redis_url, **notify_env(servers.url), SV_JOB_TIMEOUT="2",
                       SV_MAX_JOBS="1")
    log = tmp_path / "worker.log"
    # One channel per round, so each one's send (or batch) is where a worker dies; each round's worker
    # first finishes the job the previous one was killed in.
    rounds = [[wa, due(t, "invoice_due", None, ntf["whatsapp"], "second-producer")], [sms], [email]]
    for published in rounds:
        for event in published:
            await pipeline.publisher.publish(event)
            assert (await pipeline.publisher.publish(event)).duplicate  # a producer's retry is refused
        doomed = _worker({**env, "SV_FAILPOINTS": crash_at}, log)
        try:
            code = await asyncio.to_thread(doomed.wait, 60)
        finally:
            if doomed.poll() is None:
                doomed.kill()
                doomed.wait()
        assert code == -signal.SIGKILL
        # arq re-runs a killed worker's job when its in-progress key expires (the slowest function's
        # timeout + 10 s); expire it now instead of waiting.
        for key in await pipeline.redis.keys("arq:in-progress:*"):
            await pipeline.redis.delete(key)
    worker = _worker(env, log)
    try:
        await pipeline.settle(within=60)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(worker.wait, 30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()

    for channel in ("whatsapp", "sms", "email"):
        accepted = [r for r in servers.requests_for(channel) if r.status < 300]
        assert servers.deliveries[channel] == 1, channel
        assert accepted, channel
        assert servers.requests_for(channel)[-1] is accepted[-1]  # nothing was sent after the acceptance
    assert len([r for r in servers.requests_for("whatsapp") if r.status == 200]) == 1
    assert len([r for r in servers.requests_for("sms") if r.status == 200]) == 1
    assert {r.headers["idempotency-key"] for r in servers.requests_for("email")} == {f"{ntf['email']}/email"}
    notifications = await db.query("SELECT id, channel, cost, billed FROM notifications ORDER BY channel")
    assert sorted(notifications, key=lambda r: r["id"]) == sorted(
        [{"id": ntf[ch], "channel": ch, "cost": COST_AT_SEND[ch], "billed": 0} for ch in ntf], key=lambda r: r["id"])
    charges = await db.query("SELECT id, state, amount FROM notification_charges")
    assert {r["id"]: (r["state"], r["amount"]) for r in charges} == {
        ntf[ch]: ("pending" if ch == "whatsapp" else "billable", RATE_CARD[ch]) for ch in ntf}
    statuses = await db.query("SELECT status, count(*) AS n FROM event_inbox GROUP BY status ORDER BY status")
    assert statuses == [{"status": "applied", "n": 3}, {"status": "ignored", "n": 1}]
    claims = {r["channel"]: r["status"] for r in await db.query("SELECT channel, status FROM notification_sends")}
    if crash_at == "after_send":  # died between the accepted request and its batch
        assert claims == {"whatsapp": "unknown", "sms": "unknown", "email": "sent"}
        assert [r.status for r in servers.requests_for("email")] == [200, 200]  # same key: one e-mail
    else:
        assert claims == {"whatsapp": "sent", "sms": "sent", "email": "sent"}
        assert len(servers.requests_for("email")) == 1
