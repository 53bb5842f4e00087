"""End to end over real HTTP (uvicorn), real Redis and running arq workers: a signed Razorpay capture
posted to the ingress pays the invoice, appends the transaction and audit row, activates the project."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from structlog.testing import capture_logs

from bootstrap.ingress import build_app
from tests.support.factories import NOW_MS, make_tenant
from tests.support.gateway import connect_account, rzp_captured, serve, sign_razorpay
from tests.support.pipeline import Pipeline

ROUTER = "handlers.routes:ROUTER"
NOW = datetime.fromtimestamp(NOW_MS / 1000 + 3600, tz=UTC)


def fixed_clock(deps):  # type: ignore[no-untyped-def]
    return dataclasses.replace(deps, clock=lambda: NOW)


@pytest.fixture
async def http(pipeline: Pipeline) -> AsyncIterator[httpx.AsyncClient]:
    """The production app with its own lifespan (database, Redis and the encrypted accounts from settings),
    served by uvicorn."""
    async with serve(build_app(pipeline.settings)) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield client


async def invoice_status(pipeline: Pipeline, invoice_id: str) -> str:
    return str((await pipeline.db.query("SELECT status FROM invoices WHERE id = ?", (invoice_id,)))[0]["status"])


async def test_a_signed_razorpay_capture_posted_to_the_ingress_pays_the_invoice_and_activates_the_project(
    pipeline: Pipeline, http: httpx.AsyncClient
) -> None:
    t = await make_tenant(pipeline.db, amount_total=1180.0)
    account = await connect_account(pipeline.db, t.org_id)
    await pipeline.start_worker(ROUTER, customize=fixed_clock)
    body, headers = sign_razorpay(rzp_captured(t.invoice_id, 118000, payment_id="pay_E2E0001"))
    response = await http.post(f"/webhooks/razorpay/{account.endpoint_key}", content=body, headers=headers)
    assert response.status_code == 200, response.text
    event_id = response.json()["event_id"]

    async def paid() -> bool:
        return await invoice_status(pipeline, t.invoice_id) == "paid"

    await pipeline.wait_for(paid, what="the invoice to be paid")
    assert await pipeline.inbox_status(event_id) == "applied"
    txns = await pipeline.db.query("SELECT gateway_payment_id, status, amount FROM transactions WHERE invoice_id = ?",
                                   (t.invoice_id,))
    assert txns == [{"gateway_payment_id": "pay_E2E0001", "status": "paid", "amount": 1180.0}]
    audits = await pipeline.db.query("SELECT event_type, severity FROM audit_logs WHERE org_id = ?"
                                     " AND event_type LIKE 'payment.%'", (t.org_id,))
    assert audits == [{"event_type": "payment.captured", "severity": "medium"}]
    project = await pipeline.db.query("SELECT status, activated_at FROM projects WHERE id = ?", (t.project_id,))
    assert project == [{"status": "active", "activated_at": NOW_MS + 3_600_000}]
    client = await pipeline.db.query("SELECT total_spend FROM clients WHERE id = ?", (t.client_id,))
    assert client == [{"total_spend": 1180.0}]
    follow = await pipeline.db.query("SELECT dedupe_key FROM event_inbox WHERE type = 'notification.due'")
    assert follow == [{"dedupe_key": f"notify:booking_confirmed:{t.project_id}"}]


async def test_two_captures_of_one_invoice_on_two_workers_both_land(
    pipeline: Pipeline, http: httpx.AsyncClient
) -> None:
    t = await make_tenant(pipeline.db, amount_total=1000.0)
    account = await connect_account(pipeline.db, t.org_id)
    for payment_id, amount in (("pay_Half0001", 60000), ("pay_Half0002", 40000)):
        body, headers = sign_razorpay(rzp_captured(t.invoice_id, amount, payment_id=payment_id))
        response = await http.post(f"/webhooks/razorpay/{account.endpoint_key}", content=body, headers=headers)
        assert response.status_code == 200
    with capture_logs() as logs:
        # One job each, two Deps (two lock tables): the two captures run at the same time.
        await pipeline.start_worker(ROUTER, customize=fixed_clock, max_jobs=1)
        await pipeline.start_worker(ROUTER, customize=fixed_clock, max_jobs=1)

        async def both_applied() -> bool:
            rows = await pipeline.db.query("SELECT count(*) AS n FROM event_inbox WHERE type = 'payment.captured'"
                                           " AND status = 'applied'")
            return int(rows[0]["n"]) == 2

        await pipeline.wait_for(both_applied, what="both captures to be applied")
    assert await invoice_status(pipeline, t.invoice_id) == "paid"
    txns = await pipeline.db.query("SELECT gateway_payment_id, amount FROM transactions WHERE invoice_id = ?"
                                   " ORDER BY gateway_payment_id", (t.invoice_id,))
    assert txns == [{"gateway_payment_id": "pay_Half0001", "amount": 600.0},
                    {"gateway_payment_id": "pay_Half0002", "amount": 400.0}]
    client = await pipeline.db.query("SELECT total_spend FROM clients WHERE id = ?", (t.client_id,))
    assert client == [{"total_spend": 1000.0}]
    audits = await pipeline.db.query("SELECT count(*) AS n FROM audit_logs WHERE org_id = ?"
                                     " AND event_type = 'payment.captured'", (t.org_id,))
    assert audits == [{"n": 2}]
    conflicts = [e for e in logs if e["event"] == "event_retry" and "VersionConflict" in e.get("error", "")]
    print(f"version conflicts retried: {len(conflicts)}")  # noqa: T201 - a figure for the report
