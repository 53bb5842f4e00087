"""A running ingress and worker (`python -m cli ingress` and `python -m cli worker` with SV_METRICS_PORT,
real processes on a SQLite file, a real redis-server and the fake WhatsApp API) are sent a few signed
webhooks; both `/metrics` are scraped over HTTP and must count exactly what happened, pass `promtool
check metrics`, and the worker's endpoint must stop with the worker."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from store.sqlite import SqliteDatabase
from tests.support.factories import make_tenant
from tests.support.gateway import TEST_ENCRYPTION_KEY, connect_account, razorpay_event, rzp_captured, sign_razorpay
from tests.support.metrics import Scrape, promtool_check_metrics
from tests.support.notify_harness import notify_env
from tests.support.pipeline import Pipeline
from tests.support.processes import cli, pipeline_env, start, stop
from tests.support.provider_servers import ProviderServers, provider_servers
from tests.support.redis_server import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def servers() -> Iterator[ProviderServers]:
    with provider_servers() as running:
        yield running


async def _until(condition, within: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


async def test_a_running_ingress_and_worker_serve_metrics_that_count_exactly_what_happened(
    pipeline: Pipeline, servers: ProviderServers, redis_url: str, tmp_path: Path,
) -> None:
    db = pipeline.db
    assert isinstance(db, SqliteDatabase)
    t = await make_tenant(db, org_config={"notifications": {"quiet_hours": None}})  # real clock, any hour
    endpoint = (await connect_account(db, t.org_id)).webhook_path  # the studio's own Razorpay account
    ingress_port, metrics_port = free_port(), free_port()
    # WhatsApp billed on acceptance here: the send is the billable moment the cost counter counts.
    env = pipeline_env(f"sqlite:///{db.path}", redis_url, **notify_env(servers.url), SV_JOB_TIMEOUT="5",
                       SV_METRICS_PORT=str(metrics_port), SV_PIPELINE_STATE_INTERVAL_S="0.5",
                       SV_ACCOUNTS_ENCRYPTION_KEYS=json.dumps([TEST_ENCRYPTION_KEY]),
                       SV_BILLABLE_ON=json.dumps({"whatsapp": "accepted"}),
                       SV_HEARTBEAT_FILE=str(tmp_path / "worker.heartbeat"))
    started = time.time()
    ingress = start(env, tmp_path / "ingress.log", "ingress", "--port", str(ingress_port))
    worker = start(env, tmp_path / "worker.log", "worker")
    ingress_url, worker_url = f"http://127.0.0.1:{ingress_port}", f"http://127.0.0.1:{metrics_port}"
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            async def both_up() -> bool:
                try:
                    return ((await http.get(f"{ingress_url}/readyz")).status_code == 200
                            and (await http.get(f"{worker_url}/metrics")).status_code == 200)
                except httpx.TransportError:
                    return False

            await _until(both_up, 60, "the ingress and the worker's metrics endpoint")
            capture = sign_razorpay(rzp_captured(t.invoice_id, 118000, payment_id="pay_Scrape01"), event_id="LtS1")
            unknown = sign_razorpay(rzp_captured("inv_019a0000-0000-7000-8000-000000000000", 5000,
                                                 payment_id="pay_Scrape02"), event_id="LtS2")
            ignored = sign_razorpay(razorpay_event("order.paid", {"order": {"entity": {"id": "order_1"}}}),
                                    event_id="LtS3")
            forged = (capture[0], capture[1] | {"x-razorpay-signature": "f" * 64})
            deliveries = [capture, capture, unknown, ignored, forged]  # the second is a redelivery
            codes = []
            for body, headers in deliveries:
                codes.append((await http.post(f"{ingress_url}{endpoint}", content=body,
                                              headers=headers)).status_code)
            assert codes == [200, 200, 200, 200, 401]

            async def settled() -> bool:
                rows = await db.query("SELECT type, status FROM event_inbox ORDER BY type, status")
                return [(r["type"], r["status"]) for r in rows] == [
                    ("notification.due", "applied"), ("payment.captured", "applied"), ("payment.captured", "dead"),
                    ("payment.gateway_event_ignored", "ignored")]

            await _until(settled, 60, "the capture, its follow-up and the dead letter")
            settled_at = time.time()

            async def scrape(url: str) -> Scrape:
                return Scrape((await http.get(url)).text)

            async def snapshot_caught_up() -> bool:  # the shared pipeline state, served by both processes
                for url in (f"{worker_url}/metrics", f"{ingress_url}/metrics"):
                    s = await scrape(url)
                    if s.value("studiovault_pipeline_state_timestamp_seconds") < settled_at:
                        return False
                return True

            await _until(snapshot_caught_up, 30, "a pipeline-state snapshot taken after the events settled")
            w = await scrape(f"{worker_url}/metrics")
            i = await scrape(f"{ingress_url}/metrics")
            check = cli(env, "worker", "--check")
    finally:
        stop(ingress)
        code = stop(worker)
    assert code == 0

    # The ingress: four deliveries answered 200 (one a redelivery), one forged.
    assert i.value("studiovault_ingress_requests_total", source="razorpay", code="200") == 4
    assert i.value("studiovault_ingress_requests_total", source="razorpay", code="401") == 1
    assert i.value("studiovault_ingress_signature_failures_total", source="razorpay") == 1
    assert i.value("studiovault_ingress_publish_failures_total", source="razorpay") == 0
    assert i.value("studiovault_ingress_request_duration_seconds_count", source="razorpay") == 5
    assert 0 < i.value("studiovault_ingress_request_duration_seconds_sum", source="razorpay") < 5 * 4
    assert i.value("studiovault_ingress_request_body_bytes_count", source="razorpay") == 5
    assert i.value("studiovault_ingress_request_body_bytes_sum", source="razorpay") == sum(
        len(body) for body, _ in deliveries)
    for le in (256, 1024, 4096):
        assert i.value("studiovault_ingress_request_body_bytes_bucket", source="razorpay", le=f"{le}.0") == sum(
            len(body) <= le for body, _ in deliveries)

    # The worker: the capture and its follow-up applied, the unknown invoice dead-lettered, nothing else.
    events = {(s_type, outcome): w.value("studiovault_events_total", type=s_type, outcome=outcome)
              for s_type in ("payment.captured", "notification.due", "other")
              for outcome in ("applied", "duplicate", "retry", "deferred", "dead", "ignored")}
    assert {k: v for k, v in events.items() if v} == {("payment.captured", "applied"): 1,
                                                      ("payment.captured", "dead"): 1,
                                                      ("notification.due", "applied"): 1}
    assert w.value("studiovault_event_apply_duration_seconds_count", type="payment.captured") == 2
    assert w.value("studiovault_event_apply_duration_seconds_count", type="notification.due") == 1
    assert w.value("studiovault_event_end_to_end_seconds_count", type="payment.captured") == 1  # committed once
    assert 0 < w.value("studiovault_event_end_to_end_seconds_sum", type="payment.captured") < 30
    assert w.value("studiovault_event_end_to_end_seconds_count", type="notification.due") == 1
    assert w.value("studiovault_event_end_to_end_seconds_bucket", type="notification.due", le="+Inf") == 1
    assert w.value("studiovault_notification_sends_total", channel="whatsapp", outcome="sent") == 1
    assert w.value("studiovault_notification_cost_paise_total", channel="whatsapp") == 35
    assert w.value("studiovault_version_conflicts_total", type="payment.captured") == 0
    assert all(w.value("studiovault_database_errors_total", kind=k) == 0
               for k in ("transient", "conflict", "constraint", "query", "unavailable"))
    assert started <= w.value("studiovault_worker_heartbeat_timestamp_seconds") <= time.time()

    # The pipeline state, one snapshot served by both.
    for scrape_ in (w, i):
        assert scrape_.value("studiovault_inbox_events", status="pending") == 0
        assert scrape_.value("studiovault_inbox_events", status="dead") == 1
        assert scrape_.value("studiovault_inbox_oldest_pending_age_seconds") == 0
        assert scrape_.value("studiovault_queue_depth") == 0
    promtool_check_metrics(w.text)
    promtool_check_metrics(i.text)

    assert check.returncode == 0, check.stdout + check.stderr
    assert "ok: the worker polled Redis" in check.stdout
    async with httpx.AsyncClient() as http:  # the worker's metrics server stopped with it
        with pytest.raises(httpx.ConnectError):
            await http.get(f"{worker_url}/metrics")
