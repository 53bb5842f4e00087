"""The status webhooks' answers over real HTTP: the WhatsApp handshake, and signed, forged, unsigned and
stale deliveries from each provider. Signatures are made by tests/support/fakes/status (independent of
the code under test); a refused delivery writes nothing and enqueues nothing."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from tests.support.fakes.status import msg91 as dlr
from tests.support.fakes.status import resend as rs
from tests.support.fakes.status import whatsapp as wa
from tests.support.gateway import serve
from tests.support.pipeline import Pipeline
from tests.support.status_flow import (
    APP_SECRET,
    MSG91_TOKEN,
    OLD_APP_SECRET,
    OLD_RESEND_SECRET,
    RESEND_SECRET,
    VERIFY_TOKEN,
    status_settings,
)


@pytest.fixture
async def ingress(pipeline: Pipeline) -> AsyncIterator[tuple[httpx.AsyncClient, Pipeline]]:
    settings = status_settings()
    app = pipeline.ingress_app(**{name: getattr(settings, name) for name in (
        "whatsapp_app_secrets", "whatsapp_verify_token", "msg91_webhook_tokens", "resend_webhook_secrets")})
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        yield http, pipeline


def u(http: httpx.AsyncClient, path: str) -> str:
    return str(http.base_url).rstrip("/") + path


async def inbox(pipeline: Pipeline) -> list[dict[str, Any]]:
    return await pipeline.db.query("SELECT type, dedupe_key, org_id, payload_json FROM event_inbox ORDER BY id")


async def nothing_written(pipeline: Pipeline) -> bool:
    return await inbox(pipeline) == [] and await pipeline.queue.depth() == 0


async def test_the_whatsapp_handshake_answers_the_challenge_only_with_our_verify_token(
    ingress: tuple[httpx.AsyncClient, Pipeline]
) -> None:
    http, pipeline = ingress
    ok = await http.send(wa.verification_request(u(http, "/webhooks/whatsapp"), VERIFY_TOKEN, "1158201444"))
    assert (ok.status_code, ok.text) == (200, "1158201444")
    assert ok.headers["content-type"].startswith("text/plain")
    for token, mode in (("not-our-token", "subscribe"), (VERIFY_TOKEN, "unsubscribe"), ("", "subscribe")):
        refused = await http.send(wa.verification_request(u(http, "/webhooks/whatsapp"), token, "42", mode))
        assert refused.status_code == 403, (token, mode)
        assert "42" not in refused.text
    assert await nothing_written(pipeline)


async def test_signed_whatsapp_statuses_are_recorded_once_each_and_a_rotated_secret_still_verifies(
    ingress: tuple[httpx.AsyncClient, Pipeline]
) -> None:
    http, pipeline = ingress
    wamid = wa.new_wamid()
    body = wa.statuses_body([wa.status(wamid, "sent", 1_790_000_000), wa.status(wamid, "delivered", 1_790_000_003)])
    first = await http.send(wa.post_request(u(http, "/webhooks/whatsapp"), body, APP_SECRET))
    assert first.status_code == 200, first.text
    assert first.json() == {"accepted": 2, "duplicates": 0, "ignored": 0}
    again = await http.send(wa.post_request(u(http, "/webhooks/whatsapp"), body, OLD_APP_SECRET))
    assert again.json() == {"accepted": 0, "duplicates": 2, "ignored": 0}
    rows = await inbox(pipeline)
    assert [r["type"] for r in rows] == ["notification.status_reported"] * 2
    payloads = [json.loads(r["payload_json"])["payload"] for r in rows]
    assert sorted(p["status"] for p in payloads) == ["delivered", "sent"]
    assert {p["provider_message_id"] for p in payloads} == {wamid}
    assert await pipeline.queue.depth() == 2


async def test_forged_unsigned_and_tampered_whatsapp_posts_get_401_and_change_nothing(
    ingress: tuple[httpx.AsyncClient, Pipeline]
) -> None:
    http, pipeline = ingress
    url = u(http, "/webhooks/whatsapp")
    raw = wa.encode(wa.status_body(wa.new_wamid(), "failed", 1_790_000_000))
    forged = wa.post_request(url, raw, "someone-elses-app-secret")
    unsigned = httpx.Request("POST", url, content=raw, headers={"Content-Type": "application/json"})
    tampered = httpx.Request("POST", url, content=raw.replace(b'"failed"', b'"read"'),
                             headers=wa.signed_headers(raw, APP_SECRET))
    for request in (forged, unsigned, tampered):
        response = await http.send(request)
        assert response.status_code == 401, response.text
    assert await nothing_written(pipeline)


async def test_msg91_reports_need_the_path_token(ingress: tuple[httpx.AsyncClient, Pipeline]) -> None:
    http, pipeline = ingress
    base = u(http, "/webhooks/msg91")
    report = [dlr.report("919800000001", dlr.DELIVERED, "2026-09-21 19:20:00")]
    for url in (base, dlr.url_with_token(base, "guessed-token"), dlr.url_with_token(base, MSG91_TOKEN[:-1])):
        response = await http.send(dlr.v2_request(url, dlr.new_request_id(), report))
        assert response.status_code == 401, url
    assert await nothing_written(pipeline)

    request_id = dlr.new_request_id()
    v2 = await http.send(dlr.v2_request(dlr.url_with_token(base, MSG91_TOKEN), request_id, report))
    v3 = await http.send(dlr.json_request(dlr.url_with_token(base, MSG91_TOKEN), dlr.v3_body(
        request_id, "919800000001", dlr.DELIVERED, "2026-09-21 19:20:00")))
    assert (v2.status_code, v2.json()["accepted"]) == (200, 1)
    assert (v3.status_code, v3.json()["duplicates"]) == (200, 1)  # the same report in the v3 shape
    (row,) = await inbox(pipeline)
    payload = json.loads(row["payload_json"])["payload"]
    assert (payload["provider_message_id"], payload["status"], payload["channel"]) == (request_id, "delivered", "sms")
    assert payload["occurred_at"] == "2026-09-21T19:20:00+05:30"


async def test_resend_events_are_verified_the_svix_way(ingress: tuple[httpx.AsyncClient, Pipeline]) -> None:
    http, pipeline = ingress
    url = u(http, "/webhooks/resend")
    body = rs.email_event("email.bounced", rs.new_email_id())
    now = int(time.time())
    refused = [
        rs.post_request(url, body, rs.make_secret()),  # another endpoint's secret
        rs.post_request(url, body, RESEND_SECRET, timestamp=now - 301),  # stale
        rs.post_request(url, body, RESEND_SECRET, timestamp=now + 301),  # from the future
        httpx.Request("POST", url, content=rs.encode(body), headers={"Content-Type": "application/json"}),
    ]
    for request in refused:
        response = await http.send(request)
        assert response.status_code == 401, response.text
    assert await nothing_written(pipeline)

    msg_id = rs.new_message_id()
    accepted = await http.send(rs.post_request(url, body, OLD_RESEND_SECRET, msg_id=msg_id))
    retried = await http.send(rs.post_request(url, body, RESEND_SECRET, msg_id=msg_id))
    assert (accepted.status_code, accepted.json()["accepted"]) == (200, 1)
    assert retried.json()["duplicates"] == 1
    inbound = await http.send(rs.post_request(url, rs.email_event("email.received", rs.new_email_id()),
                                              RESEND_SECRET))
    assert inbound.json() == {"accepted": 0, "duplicates": 0, "ignored": 1}
    (row,) = await inbox(pipeline)
    assert row["dedupe_key"] == f"status:resend:{msg_id}"
    payload = json.loads(row["payload_json"])["payload"]
    assert (payload["status"], payload["error_code"]) == ("failed", "bounce_permanent_general")


async def test_an_unconfigured_source_refuses_with_503(pipeline: Pipeline) -> None:
    app = pipeline.ingress_app(whatsapp_app_secrets=[], whatsapp_verify_token=None, msg91_webhook_tokens=[],
                               resend_webhook_secrets=[SecretStr(" ")])
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        raw = wa.encode(wa.status_body(wa.new_wamid(), "sent", 1_790_000_000))
        assert (await http.send(wa.post_request(f"{url}/webhooks/whatsapp", raw, APP_SECRET))).status_code == 503
        assert (await http.send(wa.verification_request(f"{url}/webhooks/whatsapp", VERIFY_TOKEN))).status_code == 503
        dlr_url = dlr.url_with_token(f"{url}/webhooks/msg91", MSG91_TOKEN)
        assert (await http.send(dlr.v2_request(dlr_url, "r1", []))).status_code == 503
        assert (await http.send(rs.post_request(f"{url}/webhooks/resend", b"{}", RESEND_SECRET))).status_code == 503
    assert await nothing_written(pipeline)
