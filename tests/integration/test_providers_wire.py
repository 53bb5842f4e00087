"""Each provider client against a local server speaking its wire format over a real socket, and the
error classification of each provider's answers."""

from __future__ import annotations

import httpx
import pytest

from bootstrap.senders import build_senders
from providers.email import EmailSender
from providers.email import classify as classify_email
from providers.port import OutboundMessage, SendRejected, SendResult, SendRetryable
from providers.sms import classify as classify_sms
from providers.whatsapp import WhatsAppSender
from providers.whatsapp import classify as classify_whatsapp
from tests.support.notify_harness import notify_settings
from tests.support.provider_servers import ProviderServers, Scripted
from tests.support.redis_server import free_port

NTF = "ntf_01a2101d-abe5-750c-a3eb-7a47c0c52bed"


def message(channel: str, to: str = "919812345678") -> OutboundMessage:
    return OutboundMessage(channel, to, "invoice_due", ("Asha", "₹4,999.00", "INV-2024-0042"),  # type: ignore[arg-type]
                           NTF, f"{NTF}/{channel}", "Invoice due", "text body", "<p>html</p>")


async def test_whatsapp_sends_a_template_message_with_the_bearer_token(
    servers: ProviderServers, http: httpx.AsyncClient
) -> None:
    servers.reset()
    sender = build_senders(notify_settings(servers.url), http)["whatsapp"]
    assert await sender.send(message("whatsapp")) == SendResult("wamid.TEST1")
    (request,) = servers.requests
    assert request.path == "/v21.0/106540352242922/messages"
    assert request.headers["authorization"] == "Bearer wa-test-token"
    assert request.headers["content-type"] == "application/json"
    assert request.body == {
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": "919812345678", "type": "template",
        "template": {"name": "invoice_due", "language": {"code": "en"}, "components": [{"type": "body", "parameters": [
            {"type": "text", "text": "Asha"}, {"type": "text", "text": "₹4,999.00"},
            {"type": "text", "text": "INV-2024-0042"}]}]},
        "biz_opaque_callback_data": NTF,
    }


async def test_sms_sends_a_msg91_flow_with_the_dlt_template_id_and_authkey(
    servers: ProviderServers, http: httpx.AsyncClient
) -> None:
    servers.reset()
    sender = build_senders(notify_settings(servers.url), http)["sms"]
    assert await sender.send(message("sms")) == SendResult("000000000000000000000001")
    (request,) = servers.requests
    assert request.path == "/api/v5/flow"
    assert request.headers["authkey"] == "msg91-test-authkey"
    assert "authorization" not in request.headers
    assert request.body == {"template_id": "6650a1b2c3d4e5f6a7b8c9d0", "short_url": "0", "realTimeResponse": "1",
                            "recipients": [{"mobiles": "919812345678", "VAR1": "Asha", "VAR2": "₹4,999.00",
                                            "VAR3": "INV-2024-0042"}]}


async def test_sms_without_a_dlt_template_for_the_kind_is_refused_before_any_request(
    servers: ProviderServers, http: httpx.AsyncClient
) -> None:
    servers.reset()
    sender = build_senders(notify_settings(servers.url, msg91_template_ids={}), http)["sms"]
    with pytest.raises(SendRejected, match="sms_template_missing"):
        await sender.send(message("sms"))
    assert servers.requests == []


async def test_email_repeated_with_its_idempotency_key_is_delivered_once(
    servers: ProviderServers, http: httpx.AsyncClient
) -> None:
    servers.reset()
    sender = build_senders(notify_settings(servers.url), http)["email"]
    first = await sender.send(message("email", "asha@example.in"))
    second = await sender.send(message("email", "asha@example.in"))
    assert first == second == SendResult("00000000-0000-4000-8000-000000000001")
    assert servers.deliveries["email"] == 1
    assert [r.headers["idempotency-key"] for r in servers.requests] == [f"{NTF}/email"] * 2
    assert servers.requests[0].headers["authorization"] == "Bearer re_test_key"
    assert servers.requests[0].body["to"] == ["asha@example.in"]


async def test_a_slow_provider_times_out_as_retryable(servers: ProviderServers, http: httpx.AsyncClient) -> None:
    servers.reset()
    servers.script("whatsapp", Scripted(200, {}, delay_s=1.0))
    sender = WhatsAppSender(http, servers.url, "v21.0", "1", "t", timeout_s=0.2)
    with pytest.raises(SendRetryable, match="whatsapp_transport: ReadTimeout"):
        await sender.send(message("whatsapp"))


async def test_an_unreachable_provider_is_retryable(http: httpx.AsyncClient) -> None:
    sender = EmailSender(http, f"http://127.0.0.1:{free_port()}", "k", "from@example.in", timeout_s=1)
    with pytest.raises(SendRetryable, match="email_transport: ConnectError"):
        await sender.send(message("email", "a@example.in"))


def graph(code: int) -> dict[str, object]:
    return {"error": {"message": f"(#{code})", "type": "OAuthException", "code": code, "fbtrace_id": "x"}}


@pytest.mark.parametrize(("answer", "retry", "reason", "after"), [
    ((429, graph(130429), {"retry-after": "30"}), True, "whatsapp_130429", 30.0),
    ((400, graph(130429), {}), True, "whatsapp_130429", 1.0),
    ((400, graph(131056), {}), True, "whatsapp_131056", 6.0),
    ((500, graph(131000), {}), True, "whatsapp_131000", 5.0),
    ((503, {}, {"retry-after": "7"}), True, "whatsapp_http_503", 7.0),
    ((400, graph(131026), {}), False, "whatsapp_131026", None),  # undeliverable: fall back
    ((400, graph(132001), {}), False, "whatsapp_132001", None),  # template does not exist
    ((400, graph(131009), {}), False, "whatsapp_131009", None),  # parameter value invalid
    ((401, graph(190), {}), False, "whatsapp_190", None),  # token expired: alert, do not loop
    ((400, graph(131049), {}), False, "whatsapp_131049", None),  # Meta chose not to deliver: soft fail
])
def test_whatsapp_errors_are_classified_on_the_graph_code(
    answer: tuple[int, dict[str, object], dict[str, str]], retry: bool, reason: str, after: float | None
) -> None:
    status, body, headers = answer
    response = httpx.Response(status, json=body, headers=headers)
    with pytest.raises(SendRetryable if retry else SendRejected) as caught:
        classify_whatsapp(response)
    assert caught.value.reason == reason
    if retry:
        assert caught.value.retry_after_s == after  # type: ignore[union-attr]


@pytest.mark.parametrize(("status", "body", "headers", "outcome"), [
    (200, {"type": "success", "message": "5e1e93cad6fc054d8e759a5b"}, {}, SendResult("5e1e93cad6fc054d8e759a5b")),
    (200, {"type": "error", "code": "311", "message": "same request twice"}, {},
     SendResult(None, "duplicate_of_accepted_request")),
    (429, {"type": "error", "message": "Too many"}, {"retry-after": "12"}, SendRetryable("sms_http_429", 12.0)),
    (502, {}, {}, SendRetryable("sms_http_502", None)),
    (200, {"type": "error", "code": "306", "message": "route unavailable"}, {}, SendRetryable("sms_306", 60.0)),
    (200, {"type": "error", "code": "202", "message": "Mobile no. not valid"}, {},
     SendRejected("sms_202: Mobile no. not valid")),
    (401, {"type": "error", "message": "Unauthorized"}, {}, SendRejected("sms_http_401: Unauthorized")),
    (418, {"type": "error", "message": "IP not whitelisted"}, {}, SendRejected("sms_http_418: IP not whitelisted")),
])
def test_msg91_answers_are_classified_on_type_and_code(
    status: int, body: dict[str, object], headers: dict[str, str], outcome: object
) -> None:
    response = httpx.Response(status, json=body, headers=headers)
    check(lambda: classify_sms(response), outcome)


@pytest.mark.parametrize(("status", "name", "headers", "outcome"), [
    (200, None, {}, SendResult("49a3999c")),
    (409, "invalid_idempotent_request", {}, SendResult(None, "idempotency_key_already_used")),
    (409, "concurrent_idempotent_requests", {}, SendRetryable("email_concurrent_idempotent_requests", None)),
    (429, "rate_limit_exceeded", {"retry-after": "1"}, SendRetryable("email_rate_limit_exceeded", 1.0)),
    (429, "daily_quota_exceeded", {"retry-after": "60"}, SendRetryable("email_daily_quota_exceeded", 3600.0)),
    (500, "application_error", {}, SendRetryable("email_application_error", None)),
    (422, "validation_error", {}, SendRejected("email_validation_error: bad")),
    (403, "invalid_api_key", {}, SendRejected("email_invalid_api_key: bad")),
])
def test_email_answers_are_classified_on_status_and_name(
    status: int, name: str | None, headers: dict[str, str], outcome: object
) -> None:
    body = {"id": "49a3999c"} if name is None else {"statusCode": status, "name": name, "message": "bad"}
    response = httpx.Response(status, json=body, headers=headers)
    check(lambda: classify_email(response), outcome)


def check(call, outcome: object) -> None:  # type: ignore[no-untyped-def]
    if isinstance(outcome, SendResult):
        assert call() == outcome
        return
    with pytest.raises(type(outcome)) as caught:  # type: ignore[arg-type]
        call()
    assert caught.value.reason == outcome.reason  # type: ignore[attr-defined]
    if isinstance(outcome, SendRetryable):
        assert caught.value.retry_after_s == outcome.retry_after_s  # type: ignore[attr-defined]
