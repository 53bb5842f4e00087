"""Provider delivery statuses end to end: the fake providers over real sockets, the real ingress over real
HTTP (signatures made by tests/support/fakes/status), the production unit of work with an injected clock,
on both database adapters (`db`) or the SQLite file where the engine changes nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from arq.connections import ArqRedis
from structlog.testing import capture_logs

from events import inbox
from events.billing import BillingPeriodClosed
from events.envelope import envelope_for
from producers.replay import replay_dead
from store import Database, Statement
from tests.support.billing_seed import close_event
from tests.support.factories import NOW_MS, Tenant, make_tenant
from tests.support.fakes.status import msg91 as dlr
from tests.support.fakes.status import resend as rs
from tests.support.fakes.status import whatsapp as wa
from tests.support.notify_harness import Clock, make_harness, utc
from tests.support.provider_servers import ProviderServers, Scripted, graph_error
from tests.support.status_flow import APP_SECRET, MSG91_TOKEN, RESEND_SECRET, Flow, status_flow

FALLBACK = {"notifications": {"fallback_to_sms": True}, "billing": {"included_notification_spend": "0.00"}}


async def _flow(db: Database, arq_redis: ArqRedis, http: httpx.AsyncClient, servers: ProviderServers,
                **settings: object) -> AsyncIterator[Flow]:
    servers.reset()
    h = await make_harness(db, arq_redis, http, servers.url, Clock(utc(NOW_MS)), status_unknown_grace_s=60.0,
                           **settings)
    async with status_flow(h) as flow:
        yield flow


@pytest.fixture
async def flow(db: Database, arq_redis: ArqRedis, http: httpx.AsyncClient,
               servers: ProviderServers) -> AsyncIterator[Flow]:
    async for f in _flow(db, arq_redis, http, servers):
        yield f


@pytest.fixture
async def sflow(sqlite_db: Database, arq_redis: ArqRedis, http: httpx.AsyncClient,
                servers: ProviderServers) -> AsyncIterator[Flow]:
    """On the SQLite file only, for behaviour the database engine does not change."""
    async for f in _flow(sqlite_db, arq_redis, http, servers):
        yield f


async def rows(db: Database, sql: str, *params: object) -> list[dict[str, object]]:
    return await db.query(sql, params)  # type: ignore[arg-type]


async def send_one(flow: Flow, t: Tenant, **kw: object) -> tuple[str, str]:
    """Dispatch one notification; (its id, the provider message id it was recorded with)."""
    env = await flow.h.publish(t, **kw)  # type: ignore[arg-type]
    assert await flow.h.run(env) == "applied"
    ntf = str(env.payload["notification_id"])
    (send,) = await rows(flow.h.deps.db, "SELECT provider_message_id FROM notification_sends WHERE notification_id = ?"
                                         " AND status = 'sent'", ntf)
    return ntf, str(send["provider_message_id"])


async def post_wa(flow: Flow, *statuses: dict[str, object]) -> dict[str, int]:
    response = await flow.send(wa.post_request(f"{flow.url}/webhooks/whatsapp", wa.statuses_body(list(statuses)),
                                               APP_SECRET))
    assert response.status_code == 200, response.text
    return dict(response.json())


async def close_month(flow: Flow, t: Tenant, period: str = "2026-09") -> str:
    """Close `period` for the tenant's org through the production unit of work, at 06:00 after its end."""
    event: BillingPeriodClosed = close_event(t.org_id, period)
    flow.h.clock.now = event.period_end + timedelta(hours=6)
    env = envelope_for(event, org_id=t.org_id, branch_id=None, dedupe_key=f"test:close:{t.org_id}:{period}",
                       occurred_at=flow.h.clock.now)
    await flow.h.deps.db.batch([inbox.insert(env, flow.h.clock.now)])
    return await flow.h.apply(env)


async def notification_lines(db: Database, t: Tenant) -> list[str]:
    invoices = await rows(db, "SELECT tax_json FROM invoices WHERE branch_id = ? AND invoice_type = 'overage'",
                          t.branch_id)
    return [ln["amount"] for i in invoices for ln in json.loads(str(i["tax_json"]))["lines"]
            if ln["code"] == "notifications"]


async def audits(db: Database, t: Tenant) -> list[tuple[str, dict[str, object]]]:
    found = await rows(db, "SELECT event_type, payload_json FROM audit_logs WHERE org_id = ? ORDER BY created_at, id",
                       t.org_id)
    return [(str(a["event_type"]), json.loads(str(a["payload_json"]))) for a in found]


async def test_a_131026_after_sent_sends_exactly_one_sms_audits_both_and_bills_the_sms(
    db: Database, flow: Flow, servers: ProviderServers
) -> None:
    t = await make_tenant(db, org_config=FALLBACK)
    ntf, wamid = await send_one(flow, t)
    at = flow.now_s
    assert await post_wa(flow, wa.status(wamid, "sent", at, biz_opaque_callback_data=ntf)) == {
        "accepted": 1, "duplicates": 0, "ignored": 0}
    failed = wa.status(wamid, "failed", at + 5, biz_opaque_callback_data=ntf, errors=[wa.error(131026)])
    assert (await post_wa(flow, failed))["accepted"] == 1
    assert (await post_wa(flow, failed))["duplicates"] == 1  # Meta's retry of the same POST
    await flow.settle()
    # Another failure report of the same message (another device, a later timestamp): still one SMS.
    await post_wa(flow, wa.status(wamid, "failed", at + 60, errors=[wa.error(131026)]))
    await flow.settle()

    assert [r.provider for r in servers.requests] == ["whatsapp", "sms"]
    assert servers.requests[1].body["recipients"][0]["mobiles"] == "919800000001"
    assert await rows(db, "SELECT channel, status FROM notification_sends ORDER BY channel") == [
        {"channel": "sms", "status": "sent"}, {"channel": "whatsapp", "status": "sent"}]
    (facts,) = await rows(db, "SELECT progress, failure_code, fallback_at FROM notification_deliveries")
    assert (facts["progress"], facts["failure_code"]) == (2, "131026")
    assert facts["fallback_at"] is not None
    assert await rows(db, "SELECT channel, cost, billed FROM notifications") == [
        {"channel": "sms", "cost": 0.25, "billed": 0}]
    assert await rows(db, "SELECT channel, state, amount FROM notification_charges") == [
        {"channel": "sms", "state": "billable", "amount": 0.25}]
    (late, fell_back) = await audits(db, t)
    assert late[0] == "notification.delivery_failed"
    assert (late[1]["channel"], late[1]["code"], late[1]["fallback"]) == ("whatsapp", "131026", "sms_requested")
    assert fell_back[0] == "notification.fallback_sent"
    assert fell_back[1]["sent_via"] == "sms"
    assert "whatsapp_131026" in str(fell_back[1]["failed"])
    assert await rows(db, "SELECT count(*) AS n FROM event_inbox WHERE type = 'notification.fallback_due'") == [
        {"n": 1}]

    # The rate card: WhatsApp (billable when delivered) never was; the SMS (billable when accepted) is.
    assert await close_month(flow, t) == "applied"
    assert await notification_lines(db, t) == ["0.25"]
    assert await rows(db, "SELECT billed FROM notifications WHERE id = ?", ntf) == [{"billed": 1}]


async def test_whatsapp_billed_on_acceptance_keeps_its_charge_when_a_late_failure_falls_back_to_sms(
    db: Database, arq_redis: ArqRedis, http: httpx.AsyncClient, servers: ProviderServers
) -> None:
    """SV_BILLABLE_ON whatsapp=accepted: the first send is the charge; the SMS sent after its late failure
    is not billed again, and counts nothing in the cost metric (the applied log's `cost`)."""
    async for flow in _flow(db, arq_redis, http, servers, billable_on={"whatsapp": "accepted"}):
        t = await make_tenant(db, org_config=FALLBACK)
        with capture_logs() as logs:
            ntf, wamid = await send_one(flow, t)
            failed = wa.status(wamid, "failed", flow.now_s + 5, biz_opaque_callback_data=ntf,
                               errors=[wa.error(131026)])
            assert (await post_wa(flow, failed))["accepted"] == 1
            await flow.settle()
        assert [r.provider for r in servers.requests] == ["whatsapp", "sms"]
        assert await rows(db, "SELECT channel, state, amount FROM notification_charges") == [
            {"channel": "whatsapp", "state": "billable", "amount": 0.35}]
        costs = [(e["channel"], e["cost"]) for e in logs if e["event"] == "event_applied" and "cost" in e]
        assert costs == [("whatsapp", 0.35), ("sms", 0.0)]


async def test_delivered_makes_whatsapp_billable_and_later_or_repeated_statuses_change_nothing(
    db: Database, flow: Flow, servers: ProviderServers
) -> None:
    t = await make_tenant(db, org_config=FALLBACK)
    ntf, wamid = await send_one(flow, t)
    at = flow.now_s
    await post_wa(flow, wa.status(wamid, "read", at + 9), wa.status(wamid, "delivered", at + 3))
    await flow.settle()
    assert await rows(db, "SELECT cost FROM notifications") == [{"cost": 0.35}]
    # Late and repeated: sent after read, delivered again, and a failure from another device.
    await post_wa(flow, wa.status(wamid, "sent", at + 1), wa.status(wamid, "delivered", at + 3),
                  wa.status(wamid, "failed", at + 20, errors=[wa.error(131026)]))
    await flow.settle()

    assert [r.provider for r in servers.requests] == ["whatsapp"]  # delivered: no fallback
    (facts,) = await rows(db, "SELECT progress, sent_at, delivered_at, read_at, failure_code, fallback_at"
                              " FROM notification_deliveries")
    assert facts == {"progress": 4, "sent_at": (at + 1) * 1000, "delivered_at": (at + 3) * 1000,
                     "read_at": (at + 9) * 1000, "failure_code": "131026", "fallback_at": None}
    assert await rows(db, "SELECT channel, cost FROM notifications") == [{"channel": "whatsapp", "cost": 0.35}]
    (audit,) = await audits(db, t)
    assert (audit[0], audit[1]["status_after"], audit[1]["fallback"]) == ("notification.delivery_failed", "read",
                                                                         "none")
    assert await close_month(flow, t) == "applied"
    assert await notification_lines(db, t) == ["0.35"]
    assert ntf


async def test_a_whatsapp_message_meta_does_not_charge_is_never_billed(db: Database, flow: Flow) -> None:
    t = await make_tenant(db, org_config=FALLBACK)
    _, wamid = await send_one(flow, t)
    free = wa.pricing("utility", pricing_type="free_customer_service")
    await post_wa(flow, wa.status(wamid, "delivered", flow.now_s, pricing_info=free))
    await flow.settle()
    assert await rows(db, "SELECT state FROM notification_charges") == [{"state": "void"}]
    assert await close_month(flow, t) == "applied"
    assert await rows(db, "SELECT cost, billed FROM notifications") == [{"cost": 0.0, "billed": 0}]
    assert await notification_lines(db, t) == []


async def test_a_status_for_an_unrecorded_message_retries_then_dead_letters_and_replays_once_recorded(
    sflow: Flow, servers: ProviderServers
) -> None:
    db = sflow.h.deps.db
    t = await make_tenant(db, org_config=FALLBACK)
    # The fake WhatsApp API numbers its messages: the first one sent will be wamid.TEST1.
    await post_wa(sflow, wa.status("wamid.TEST1", "delivered", sflow.now_s))
    (env,) = await sflow.pending()
    assert await sflow.h.apply(env) == "retry"  # it may be racing its send's own batch
    await sflow.settle()
    (row,) = await rows(db, "SELECT status, last_error FROM event_inbox WHERE id = ?", env.event_id)
    assert row["status"] == "dead"
    assert str(row["last_error"]).startswith("unknown_message: whatsapp message wamid.TEST1 names no recorded send")
    assert await rows(db, "SELECT count(*) AS n FROM notification_deliveries") == [{"n": 0}]

    await send_one(sflow, t)
    await replay_dead(db, sflow.h.deps.publisher, [env.event_id])
    await sflow.settle()
    assert await rows(db, "SELECT provider_message_id, progress FROM notification_deliveries") == [
        {"provider_message_id": "wamid.TEST1", "progress": 3}]
    assert await rows(db, "SELECT cost FROM notifications") == [{"cost": 0.35}]


async def test_a_whatsapp_refusal_is_audited_when_the_fallback_sms_needed_a_retry(
    sflow: Flow, servers: ProviderServers
) -> None:
    db = sflow.h.deps.db
    t = await make_tenant(db, org_config=FALLBACK)
    servers.script("whatsapp", graph_error(131026, message="Message undeliverable"))
    servers.script("sms", Scripted(500, {"type": "error", "message": "internal"}))
    env = await sflow.h.publish(t)
    assert await sflow.h.run(env) == "applied"
    assert [(r.provider, r.status) for r in servers.requests] == [("whatsapp", 400), ("sms", 500), ("sms", 200)]
    ((kind, payload),) = await audits(db, t)
    assert kind == "notification.channel_failed"
    assert payload["failed"] == {"whatsapp": "whatsapp_131026"}
    assert payload["sent_via"] == "sms"


@pytest.mark.parametrize("typed", ["09876543210", "+91 (0) 98765 43210", "0091 98765 43210"])
async def test_numbers_typed_with_the_trunk_prefix_reach_whatsapp_as_e164(
    typed: str, db: Database, flow: Flow, servers: ProviderServers
) -> None:
    t = await make_tenant(db)
    await db.batch([Statement("UPDATE clients SET phone = ? WHERE id = ?", (typed, t.client_id))])
    await send_one(flow, t)
    (request,) = servers.requests
    assert request.body["to"] == "+919876543210"


async def test_a_number_that_cannot_be_made_valid_fails_before_any_request_with_an_audited_reason(
    db: Database, flow: Flow, servers: ProviderServers
) -> None:
    t = await make_tenant(db, org_config=FALLBACK)
    await db.batch([Statement("UPDATE clients SET phone = ? WHERE id = ?", ("98765 4321", t.client_id))])
    env = await flow.h.publish(t)
    assert await flow.h.run(env) == "dead"
    assert servers.requests == []
    (row,) = await rows(db, "SELECT last_error FROM event_inbox WHERE id = ?", env.event_id)
    assert str(row["last_error"]).startswith("notification_failed: whatsapp: invalid_phone: ")
    ((kind, payload),) = await audits(db, t)
    assert kind == "notification.failed"
    failed = payload["failed"]
    assert isinstance(failed, dict)
    assert set(failed) == {"whatsapp", "sms"}
    assert "is not a valid number (not a valid number for its country; default region IN)" in str(failed["sms"])
    assert await rows(db, "SELECT channel, status FROM notification_sends ORDER BY channel") == [
        {"channel": "sms", "status": "failed"}, {"channel": "whatsapp", "status": "failed"}]


async def test_msg91_delivery_reports_move_the_sms_send_and_keep_its_charge(
    sflow: Flow, servers: ProviderServers
) -> None:
    db = sflow.h.deps.db
    t = await make_tenant(db)
    _, request_id = await send_one(sflow, t, channel="sms")
    url = dlr.url_with_token(f"{sflow.url}/webhooks/msg91", MSG91_TOKEN)
    when = sflow.h.clock.now
    response = await sflow.send(dlr.v2_request(url, request_id, [dlr.report("919800000001", dlr.FAILED, when,
                                                                            failed_reason="Absent subscriber")]))
    assert response.status_code == 200, response.text
    await sflow.settle()
    (facts,) = await rows(db, "SELECT channel, progress, failure_code, failure_reason FROM notification_deliveries")
    assert facts == {"channel": "sms", "progress": 0, "failure_code": "2", "failure_reason": "Absent subscriber"}
    # MSG91 charges failed messages too: the SMS stays billable at the rate card's price.
    assert await rows(db, "SELECT channel, cost FROM notifications") == [{"channel": "sms", "cost": 0.25}]
    assert [a[0] for a in await audits(db, t)] == ["notification.delivery_failed"]


async def test_resend_events_move_the_email_send(sflow: Flow) -> None:
    db = sflow.h.deps.db
    t = await make_tenant(db)
    ntf, email_id = await send_one(sflow, t, kind="photos_ready", channel="email")
    body = rs.email_event("email.delivered", email_id, tags={"notification_id": ntf, "kind": "photos_ready"},
                          event_time=sflow.h.clock.now)
    response = await sflow.send(rs.post_request(f"{sflow.url}/webhooks/resend", body, RESEND_SECRET,
                                                timestamp=sflow.now_s))
    assert response.status_code == 200, response.text
    await sflow.settle()
    assert await rows(db, "SELECT channel, progress FROM notification_deliveries") == [
        {"channel": "email", "progress": 3}]
    assert await rows(db, "SELECT cost FROM notifications") == [{"cost": 0.05}]


@pytest.mark.parametrize("fallback", [True, False])
async def test_a_provider_still_failing_on_the_last_attempt_falls_back_or_is_audited_not_silently_dead(
    fallback: bool, sflow: Flow, servers: ProviderServers
) -> None:
    """With a fallback channel, the spent failure budget falls back to SMS at once; without one, the last
    channel is given up on (audited, dead) only once the event is older than the provider retry window."""
    db = sflow.h.deps.db
    t = await make_tenant(db, org_config=FALLBACK if fallback else {})
    attempts = sflow.h.deps.settings.worker.max_attempts
    requests = attempts if fallback else attempts + 1
    servers.script("whatsapp", *[Scripted(503, {})] * requests)
    env = await sflow.h.publish(t)
    if fallback:
        assert await sflow.h.run(env) == "applied"
    else:
        for attempt in range(1, attempts + 1):  # the budget is spent, but the provider window is not
            assert await sflow.h.apply(env, attempt) == "retry"
            sflow.h.clock.advance(sflow.h.retries[-1])
        (pending,) = await rows(db, "SELECT status, attempts FROM event_inbox WHERE id = ?", env.event_id)
        assert pending == {"status": "pending", "attempts": attempts}
        sflow.h.clock.advance(24 * 3600)
        assert await sflow.h.apply(env, attempts + 1) == "dead"
    assert [r.status for r in servers.requests_for("whatsapp")] == [503] * requests
    ((kind, payload),) = await audits(db, t)
    failed = {"whatsapp": "retries_exhausted: whatsapp_http_503"}
    if fallback:
        assert (kind, payload["failed"], payload["sent_via"]) == ("notification.channel_failed", failed, "sms")
        assert await rows(db, "SELECT channel, cost FROM notifications") == [{"channel": "sms", "cost": 0.25}]
    else:
        assert (kind, payload["failed"]) == ("notification.failed", failed)
        (row,) = await rows(db, "SELECT status, last_error FROM event_inbox WHERE id = ?", env.event_id)
        assert row == {"status": "dead",
                       "last_error": "notification_failed: whatsapp: retries_exhausted: whatsapp_http_503"}
