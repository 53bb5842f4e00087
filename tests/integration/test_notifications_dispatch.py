"""`notification.due` through the real unit of work, on both database adapters, real Redis and the fake
providers over real sockets; time comes from an injected clock."""

from __future__ import annotations

import json

import httpx
import pytest
from arq.connections import ArqRedis

from events import inbox
from producers.replay import replay_dead
from store import Database, Statement
from tests.support.factories import NOW_MS, Tenant, make_tenant
from tests.support.notify_harness import PHONE_ID, SMS_KEY, WA_TOKEN, Clock, Harness, make_harness, utc
from tests.support.provider_servers import ProviderServers, Scripted, graph_error


@pytest.fixture
async def harness(db: Database, arq_redis: ArqRedis, http: httpx.AsyncClient,
                  servers: ProviderServers) -> Harness:
    servers.reset()
    return await make_harness(db, arq_redis, http, servers.url, Clock(utc(NOW_MS)))


@pytest.fixture
async def h(sqlite_db: Database, arq_redis: ArqRedis, http: httpx.AsyncClient, servers: ProviderServers) -> Harness:
    """A harness on the SQLite file only, for behaviour the database engine does not change."""
    servers.reset()
    return await make_harness(sqlite_db, arq_redis, http, servers.url, Clock(utc(NOW_MS)))


@pytest.fixture
async def h_accepted(sqlite_db: Database, arq_redis: ArqRedis, http: httpx.AsyncClient,
                     servers: ProviderServers) -> Harness:
    """WhatsApp billed on acceptance (SV_BILLABLE_ON), so its cost is written at send."""
    servers.reset()
    return await make_harness(sqlite_db, arq_redis, http, servers.url, Clock(utc(NOW_MS)),
                              billable_on={"whatsapp": "accepted"})


async def rows(db: Database, sql: str, *params: object) -> list[dict[str, object]]:
    return await db.query(sql, params)  # type: ignore[arg-type]


def invoice_ref(t: Tenant) -> str:
    return "BLR-" + t.invoice_id[-8:].upper()


async def test_a_whatsapp_notification_is_sent_once_to_the_e164_number_and_recorded_pending_delivery(
    db: Database, harness: Harness, servers: ProviderServers
) -> None:
    t = await make_tenant(db)
    env = await harness.publish(t)
    ntf = env.payload["notification_id"]
    assert await harness.run(env) == "applied"

    (request,) = servers.requests
    assert request.path == f"/v21.0/{PHONE_ID}/messages"
    assert request.headers["authorization"] == f"Bearer {WA_TOKEN}"
    assert request.body == {
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": "+919800000001", "type": "template",
        "template": {"name": "invoice_due", "language": {"code": "en"}, "components": [{"type": "body", "parameters": [
            {"type": "text", "text": "Asha Rao"}, {"type": "text", "text": "₹1,180.00"},
            {"type": "text", "text": invoice_ref(t)}, {"type": "text", "text": "28 Sep 2026"}]}]},
        "biz_opaque_callback_data": ntf,
    }
    # WhatsApp is billable when delivered (SV_BILLABLE_ON): recorded at send with cost 0 and a pending
    # charge of the rate-card price, until a status webhook says delivered.
    assert await rows(db, "SELECT id, branch_id, project_id, type, channel, cost, billed, created_at"
                          " FROM notifications") == [
        {"id": ntf, "branch_id": t.branch_id, "project_id": t.project_id, "type": "invoice_due",
         "channel": "whatsapp", "cost": 0.0, "billed": 0, "created_at": NOW_MS}]
    assert await rows(db, "SELECT id, channel, state, amount, billable_at FROM notification_charges") == [
        {"id": ntf, "channel": "whatsapp", "state": "pending", "amount": 0.35, "billable_at": None}]
    assert await rows(db, "SELECT id, status, provider_message_id, attempts FROM notification_sends") == [
        {"id": f"{ntf}/whatsapp", "status": "sent", "provider_message_id": "wamid.TEST1", "attempts": 1}]

    # The same event delivered again, and a second event for the same notification: nothing is sent.
    assert await harness.apply(env) == "duplicate"
    again = await harness.publish(t, notification_id=ntf, dedupe_key="another-producer-key")
    assert await harness.run(again) == "ignored"
    assert len(servers.requests) == 1
    assert len(await rows(db, "SELECT id FROM notifications")) == 1


async def test_a_permanent_whatsapp_failure_with_fallback_sends_one_sms_and_records_both_outcomes(
    db: Database, harness: Harness, servers: ProviderServers
) -> None:
    t = await make_tenant(db)
    await db.batch([Statement("UPDATE organizations SET config_json = ? WHERE id = ?", (json.dumps(
        {"notifications": {"branches": {t.branch_id: {"fallback_to_sms": True}}}}), t.org_id))])
    servers.script("whatsapp", graph_error(131026, message="Message undeliverable"))
    env = await harness.publish(t)
    ntf = env.payload["notification_id"]
    assert await harness.run(env) == "applied"

    assert [r.provider for r in servers.requests] == ["whatsapp", "sms"]
    sms = servers.requests[1]
    assert sms.path == "/api/v5/flow"
    assert sms.headers["authkey"] == SMS_KEY
    assert sms.body == {"template_id": "6650a1b2c3d4e5f6a7b8c9d0", "short_url": "0", "realTimeResponse": "1",
                        "recipients": [{"mobiles": "919800000001", "VAR1": "Asha Rao", "VAR2": "1,180.00",
                                        "VAR3": invoice_ref(t), "VAR4": "28 Sep 2026"}]}
    sends = await rows(db, "SELECT channel, status, last_error FROM notification_sends ORDER BY channel")
    assert sends == [{"channel": "sms", "status": "sent", "last_error": None},
                     {"channel": "whatsapp", "status": "failed", "last_error": "whatsapp_131026"}]
    assert await rows(db, "SELECT channel, cost FROM notifications") == [{"channel": "sms", "cost": 0.25}]
    (audit,) = await rows(db, "SELECT event_type, severity, payload_json FROM audit_logs")
    assert (audit["event_type"], audit["severity"]) == ("notification.channel_failed", "medium")
    assert json.loads(str(audit["payload_json"]))["failed"] == {"whatsapp": "whatsapp_131026"}
    assert await rows(db, "SELECT id FROM notifications WHERE id = ?", ntf) == [{"id": ntf}]


async def test_a_permanent_failure_without_fallback_dead_letters_with_an_audit_row_and_replays_after_a_fix(
    db: Database, harness: Harness, servers: ProviderServers
) -> None:
    t = await make_tenant(db)
    servers.script("whatsapp", graph_error(132001, message="Template name does not exist in the translation"))
    env = await harness.publish(t)
    assert await harness.run(env) == "dead"

    (row,) = await rows(db, "SELECT status, last_error, dead_at FROM event_inbox WHERE id = ?", env.event_id)
    assert row["status"] == "dead"
    assert row["last_error"] == "notification_failed: whatsapp: whatsapp_132001"
    assert row["dead_at"] == NOW_MS
    assert await rows(db, "SELECT id FROM notifications") == []
    (audit,) = await rows(db, "SELECT event_type, severity, actor_user_id FROM audit_logs")
    assert (audit["event_type"], audit["severity"]) == ("notification.failed", "high")
    assert await rows(db, "SELECT status FROM users WHERE id = ?", audit["actor_user_id"]) == [{"status": "active"}]

    # The template is approved now: an operator replays the dead event and it is sent, once.
    await replay_dead(db, harness.deps.publisher, [env.event_id])
    assert await harness.run(env) == "applied"
    assert [r.status for r in servers.requests] == [400, 200]
    assert await rows(db, "SELECT channel, cost FROM notifications") == [{"channel": "whatsapp", "cost": 0.0}]


async def test_wrong_tenant_sends_nothing_and_writes_nothing(
    db: Database, harness: Harness, servers: ProviderServers
) -> None:
    t = await make_tenant(db)
    other = await make_tenant(db)
    env = await harness.publish(t, branch_id=other.branch_id)
    assert await harness.run(env) == "dead"
    assert servers.requests == []
    assert await rows(db, "SELECT count(*) AS n FROM notification_sends") == [{"n": 0}]
    assert (await rows(db, "SELECT last_error FROM event_inbox WHERE id = ?", env.event_id))[0]["last_error"] \
        .startswith("wrong_tenant")


async def test_an_email_notification_carries_the_idempotency_key_derived_from_the_notification_id(
    h: Harness, servers: ProviderServers
) -> None:
    sqlite_db = h.deps.db
    t = await make_tenant(sqlite_db)
    env = await h.publish(t, "photos_ready", channel="email")
    ntf = env.payload["notification_id"]
    assert await h.run(env) == "applied"
    (request,) = servers.requests
    assert request.path == "/emails"
    assert request.headers["authorization"] == "Bearer re_test_key"
    assert request.headers["idempotency-key"] == f"{ntf}/email"
    assert request.body == {
        "from": "StudioVault <notifications@mail.studiovault.in>", "to": ["asha@example.in"],
        "subject": "Your photos from Lumen Studios are ready",
        "text": "Hi Asha Rao, your photos for your shoot are ready to view. - Lumen Studios",
        "html": "<p>Hi Asha Rao, your photos for your shoot are ready to view. - Lumen Studios</p>",
        "tags": [{"name": "notification_id", "value": ntf}, {"name": "kind", "value": "photos_ready"}],
    }
    assert await rows(sqlite_db, "SELECT channel, cost FROM notifications") == [{"channel": "email", "cost": 0.05}]


async def test_a_429_and_5xx_storm_is_retried_honouring_retry_after_and_sends_exactly_once(
    h: Harness, servers: ProviderServers
) -> None:
    sqlite_db = h.deps.db
    t = await make_tenant(sqlite_db)
    servers.script("whatsapp", graph_error(130429, status=429, retry_after="30"), graph_error(131000, status=500),
                   Scripted(503, {}), graph_error(131056))
    env = await h.publish(t)
    assert await h.run(env) == "applied"
    assert [r.status for r in servers.requests] == [429, 500, 503, 400, 200]
    assert h.retries[0] >= 30  # Retry-After: 30
    assert h.retries[3] >= 6  # 131056: the pair rate limit, about one message per 6 s to one number
    assert servers.deliveries["whatsapp"] == 1
    assert await rows(sqlite_db, "SELECT status, attempts FROM notification_sends") == [
        {"status": "sent", "attempts": 5}]
    assert await rows(sqlite_db, "SELECT channel, cost FROM notifications") == [{"channel": "whatsapp", "cost": 0.0}]


@pytest.mark.parametrize(("channel", "requests", "status"), [("whatsapp", 0, "unknown"), ("email", 1, "sent")])
async def test_a_claim_left_sending_by_a_dead_worker_is_resent_only_with_an_idempotency_key(
    channel: str, requests: int, status: str, h: Harness, servers: ProviderServers
) -> None:
    """A worker that died between the request and its batch leaves the claim 'sending'."""
    sqlite_db = h.deps.db
    t = await make_tenant(sqlite_db)
    env = await h.publish(t, channel=channel)  # type: ignore[arg-type]
    ntf = env.payload["notification_id"]
    await sqlite_db.batch([Statement(
        "INSERT INTO notification_sends (id, notification_id, channel, event_id, org_id, branch_id, status,"
        " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'sending', ?, ?)",
        (f"{ntf}/{channel}", ntf, channel, env.event_id, t.org_id, t.branch_id, NOW_MS, NOW_MS))])
    assert await h.run(env) == "applied"
    assert len(servers.requests) == requests
    assert [r.headers["idempotency-key"] for r in servers.requests] == [f"{ntf}/email"] * requests
    assert await rows(sqlite_db, "SELECT status FROM notification_sends") == [{"status": status}]
    assert len(await rows(sqlite_db, "SELECT id FROM notifications")) == 1
    audits = await rows(sqlite_db, "SELECT event_type FROM audit_logs")
    assert audits == ([{"event_type": "notification.send_unknown"}] if channel == "whatsapp" else [])


async def test_a_branch_rate_cap_defers_the_burst_to_the_next_window(
    h: Harness, servers: ProviderServers
) -> None:
    sqlite_db = h.deps.db
    t = await make_tenant(sqlite_db, org_config={"notifications": {"rate_per_minute": 2}})
    envs = [await h.publish(t) for _ in range(3)]
    assert [await h.apply(e) for e in envs] == ["applied", "applied", "retry"]
    (row,) = await rows(sqlite_db, "SELECT available_at, last_error FROM event_inbox WHERE id = ?", envs[2].event_id)
    assert row == {"available_at": 1_790_000_040_000, "last_error": "branch_rate_cap"}  # 14:14:00Z, next minute
    h.clock.advance(40)
    assert await h.apply(envs[2]) == "applied"
    assert len(servers.requests) == 3


@pytest.mark.parametrize(("rate", "cost"), [("0.115", 0.12), (0.5, 0.5), ("1.005", 1.01), ("0", 0.0)])
async def test_the_org_rate_card_overrides_the_default_cost(
    rate: object, cost: float, h_accepted: Harness
) -> None:
    h = h_accepted
    sqlite_db = h.deps.db
    t = await make_tenant(sqlite_db, org_config={"notifications": {"rate_card": {"whatsapp": rate}}})
    assert await h.run(await h.publish(t, "booking_confirmed")) == "applied"
    assert await rows(sqlite_db, "SELECT cost, billed FROM notifications") == [{"cost": cost, "billed": 0}]


async def test_an_invoice_paid_before_its_reminder_is_not_sent(
    h: Harness, servers: ProviderServers
) -> None:
    sqlite_db = h.deps.db
    t = await make_tenant(sqlite_db, invoice_status="paid")
    env = await h.publish(t)
    assert await h.run(env) == "ignored"
    assert servers.requests == []
    assert (await inbox.get(sqlite_db, env.event_id) or {})["status"] == "ignored"
