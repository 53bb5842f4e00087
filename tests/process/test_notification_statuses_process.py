"""Real processes: `studiovault ingress` and `studiovault worker` subprocesses, a real redis-server, a
SQLite file and the fake providers. A WhatsApp message is sent, Meta reports it `sent` and then
`failed` (131026) through the ingress, signed as Meta signs; the worker falls back to exactly one SMS."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from events.envelope import envelope_for
from events.ids import new_id
from events.notifications import NotificationDue, notification_dedupe_key
from store.sqlite import SqliteDatabase
from tests.support.factories import make_tenant
from tests.support.fakes.status import whatsapp as wa
from tests.support.notify_harness import notify_env
from tests.support.pipeline import Pipeline
from tests.support.processes import pipeline_env, start, stop
from tests.support.provider_servers import ProviderServers, provider_servers
from tests.support.redis_server import free_port
from tests.support.status_flow import APP_SECRET, VERIFY_TOKEN

pytestmark = pytest.mark.slow


@pytest.fixture
def servers() -> Iterator[ProviderServers]:
    with provider_servers() as running:
        yield running


async def _ready(url: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            try:
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the ingress did not start")
            await asyncio.sleep(0.1)


async def test_a_late_whatsapp_failure_posted_to_the_ingress_process_falls_back_to_one_sms(
    pipeline: Pipeline, servers: ProviderServers, redis_url: str, tmp_path: Path
) -> None:
    db = pipeline.db
    assert isinstance(db, SqliteDatabase)
    t = await make_tenant(db, org_config={"notifications": {"quiet_hours": None, "fallback_to_sms": True}})
    port = free_port()
    env = pipeline_env(f"sqlite:///{db.path}", redis_url, **notify_env(servers.url), SV_JOB_TIMEOUT="5",
                       SV_INGRESS_PORT=str(port), SV_WHATSAPP_APP_SECRETS=json.dumps([APP_SECRET]),
                       SV_WHATSAPP_VERIFY_TOKEN=VERIFY_TOKEN, SV_FALLBACK_GRACE_S="0")
    log = tmp_path / "processes.log"
    ntf = new_id("ntf")
    due = NotificationDue(notification_id=ntf, kind="booking_confirmed", project_id=t.project_id)
    await pipeline.publisher.publish(envelope_for(due, org_id=t.org_id, branch_id=t.branch_id,
                                                  dedupe_key=notification_dedupe_key("booking_confirmed", ntf)))
    worker = start(env, log, "worker")
    ingress = start(env, log, "ingress")
    url = f"http://127.0.0.1:{port}"
    try:
        await _ready(url)
        await pipeline.settle(within=60)
        (send,) = await db.query("SELECT provider_message_id FROM notification_sends WHERE id = ?",
                                 (f"{ntf}/whatsapp",))
        wamid = str(send["provider_message_id"])
        async with httpx.AsyncClient(timeout=10) as http:
            handshake = await http.send(wa.verification_request(f"{url}/webhooks/whatsapp", VERIFY_TOKEN, "8231"))
            assert (handshake.status_code, handshake.text) == (200, "8231")
            now = int(time.time())
            for state, errors in (("sent", None), ("failed", [wa.error(131026)])):
                body = wa.status_body(wamid, state, now, biz_opaque_callback_data=ntf, errors=errors)  # type: ignore[arg-type]
                response = await http.send(wa.post_request(f"{url}/webhooks/whatsapp", body, APP_SECRET))
                assert response.status_code == 200, response.text
            forged = await http.send(wa.post_request(f"{url}/webhooks/whatsapp", body, "not-the-app-secret"))
            assert forged.status_code == 401

        async def fell_back() -> bool:
            rows = await db.query("SELECT status FROM notification_sends WHERE id = ?", (f"{ntf}/sms",))
            return rows == [{"status": "sent"}]

        await pipeline.wait_for(fell_back, within=60, what="the SMS fallback to be sent")
        await pipeline.settle(within=60)
    finally:
        stop(ingress)
        stop(worker)

    assert [r.provider for r in servers.requests] == ["whatsapp", "sms"]
    assert servers.requests[0].body["to"] == "+919800000001"
    assert await db.query("SELECT channel, cost FROM notifications") == [{"channel": "sms", "cost": 0.25}]
    audits = await db.query("SELECT event_type FROM audit_logs ORDER BY created_at, id")
    assert [a["event_type"] for a in audits] == ["notification.delivery_failed", "notification.fallback_sent"]
    inbox = await db.query("SELECT type, status FROM event_inbox ORDER BY created_at, id")
    assert [(r["type"], r["status"]) for r in inbox] == [
        ("notification.due", "applied"), ("notification.status_reported", "applied"),
        ("notification.status_reported", "applied"), ("notification.fallback_due", "applied")]
