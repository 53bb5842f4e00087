"""One id from end to end, on the real parts: a signed Razorpay capture posted to the production ingress
(uvicorn), applied by a running arq worker, whose follow-up `booking_confirmed` notification is sent to
the fake WhatsApp Cloud API (a 503 first, then accepted). The whole story is found from the webhook by
one id: the gateway's event id in every log line, one trace id in the spans (OpenTelemetry SDK's
in-memory exporter)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from bootstrap.ingress import build_app
from events.envelope import Envelope
from observability import tracing
from tests.support.factories import make_tenant
from tests.support.gateway import connect_account, rzp_captured, serve, sign_razorpay
from tests.support.metrics import Scrape
from tests.support.notify_harness import notify_fields
from tests.support.pipeline import Pipeline
from tests.support.provider_servers import ProviderServers, Scripted, provider_servers

GATEWAY_EVENT_ID = "LtTrace0000001"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure(exporter, service="studiovault-test")
    yield exporter
    tracing.shutdown()


@pytest.fixture
def servers() -> Iterator[ProviderServers]:
    with provider_servers() as running:
        yield running


def by_name(finished: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in finished if s.name == name]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_a_webhook_its_capture_the_follow_up_and_the_whatsapp_send_share_one_id(
    pipeline: Pipeline, spans: InMemorySpanExporter, servers: ProviderServers,
) -> None:
    # WhatsApp billed on acceptance here, so the send itself is the billable moment the cost metric counts.
    pipeline.settings = pipeline.settings.replace(**notify_fields(servers.url), billable_on={"whatsapp": "accepted"})
    t = await make_tenant(pipeline.db, org_config={"notifications": {"quiet_hours": None}})  # send now, any hour
    endpoint = (await connect_account(pipeline.db, t.org_id)).webhook_path  # the studio's own Razorpay account
    servers.script("whatsapp", Scripted(503, {"error": {"message": "Service Unavailable"}}))  # retried at once
    worker = await pipeline.start_worker("handlers.routes:ROUTER")
    body, headers = sign_razorpay(rzp_captured(t.invoice_id, 118000, payment_id="pay_Trace0001"),
                                  event_id=GATEWAY_EVENT_ID)
    with capture_logs(processors=[merge_contextvars]) as logs:
        async with serve(build_app(pipeline.settings)) as url, httpx.AsyncClient(base_url=url) as http:
            response = await http.post(endpoint, content=body, headers=headers)
            assert response.status_code == 200, response.text

            async def sent() -> bool:
                return bool(await pipeline.db.query("SELECT id FROM notifications"))

            await pipeline.wait_for(sent, what="the booking confirmation to be sent")
            await pipeline.settle()

    # The envelopes: the follow-up names its cause and keeps the webhook's correlation id.
    rows = {r["type"]: Envelope.model_validate_json(r["payload_json"]) for r in await pipeline.db.query(
        "SELECT type, payload_json FROM event_inbox")}
    capture, follow_up = rows["payment.captured"], rows["notification.due"]
    assert capture.correlation_id == follow_up.correlation_id == GATEWAY_EVENT_ID
    assert (capture.causation_id, follow_up.causation_id) == (None, capture.event_id)
    assert capture.received_at is not None
    assert follow_up.received_at is not None

    # The logs: every line about either event, in the ingress or the worker, carries the one id.
    story = [e for e in logs if e.get("event_id") in {capture.event_id, follow_up.event_id}]
    assert {e["event"] for e in story} >= {"webhook_accepted", "event_applied", "event_retry"}
    assert all(e.get("correlation_id") == GATEWAY_EVENT_ID for e in story), [
        (e["event"], e.get("correlation_id")) for e in story if e.get("correlation_id") != GATEWAY_EVENT_ID]
    assert {e["causation_id"] for e in story if e["event_id"] == follow_up.event_id} == {capture.event_id}
    assert sum(e["event"] == "event_applied" for e in story) == 2

    # The spans: one trace, from the ingress request to the WhatsApp request.
    finished = spans.get_finished_spans()
    (request,) = by_name(finished, "POST /webhooks/razorpay/{account_key}")  # the route, not the secret URL
    (publish,) = by_name(finished, "publish")
    (applied_capture,) = by_name(finished, "apply payment.captured")
    notification_attempts = by_name(finished, "apply notification.due")
    sends = by_name(finished, "send whatsapp")
    assert len(notification_attempts) == 2  # the 503 is retried
    assert len(sends) == 2
    story_spans = [request, publish, applied_capture, *notification_attempts, *sends]
    assert {s.context.trace_id for s in story_spans} == {request.context.trace_id}
    assert parent_of(publish) == request.context.span_id
    assert parent_of(applied_capture) == publish.context.span_id  # continued from the envelope's traceparent
    assert {parent_of(s) for s in notification_attempts} == {applied_capture.context.span_id}
    assert {parent_of(s) for s in sends} == {s.context.span_id for s in notification_attempts}
    assert [s.attributes["studiovault.outcome"] for s in notification_attempts] == ["retry", "applied"]
    assert request.attributes["http.response.status_code"] == 200
    batches = [s for s in by_name(finished, "db.batch") if s.context.trace_id == request.context.trace_id]
    assert {parent_of(s) for s in batches} >= {applied_capture.context.span_id}

    # The worker's counters saw the same story.
    scrape = Scrape(worker.ctx["deps"].metrics.exposition().decode())
    assert scrape.value("studiovault_events_total", type="payment.captured", outcome="applied") == 1
    assert scrape.value("studiovault_events_total", type="notification.due", outcome="retry") == 1
    assert scrape.value("studiovault_events_total", type="notification.due", outcome="applied") == 1
    assert scrape.value("studiovault_notification_sends_total", channel="whatsapp", outcome="retry") == 1
    assert scrape.value("studiovault_notification_sends_total", channel="whatsapp", outcome="sent") == 1
    assert scrape.value("studiovault_notification_cost_paise_total", channel="whatsapp") == 35
    assert scrape.value("studiovault_event_end_to_end_seconds_count", type="notification.due") == 1
    assert scrape.value("studiovault_event_apply_duration_seconds_count", type="notification.due") == 2
