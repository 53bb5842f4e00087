"""Issue 16's acceptance, end to end over real sockets: two studios, each with its own Razorpay account and
Stripe Connect account; the ingress (uvicorn), a running arq worker on real Redis, SQLite, and local
servers speaking Razorpay's and Stripe's list APIs (tests/support/fakes).

- a delivery signed for org A naming org B's invoice is dead-lettered `wrong_tenant`; one signed with A's
  secret on B's endpoint gets 401; a rotation works per account;
- webhooks withheld, then reconciliation: every missing fact is applied once, the late webhooks that
  follow apply nothing, a deliberate amount mismatch is reported, paging and 429s are handled, and an API
  that stays down moves no checkpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from events.ids import new_id
from events.mapping.stripe import HANDLED_TYPES
from gateways.accounts import Account
from gateways.http_api import HttpGatewayApi
from producers.reconcile import Report, Window, reconcile_accounts
from tests.support.factories import Tenant, make_tenant
from tests.support.fakes.payloads import (
    now,
    refund_failed_events,
    rzp_event,
    rzp_payment,
    rzp_refund,
    rzp_webhook_request,
    stripe_event,
    stripe_payment_intent,
    stripe_refund,
    stripe_webhook_request,
)
from tests.support.fakes.razorpay_api import RazorpayApiState, serve_razorpay_api
from tests.support.fakes.stripe_api import StripeApiState, serve_stripe_api
from tests.support.gateway import Applier, account_store, connect_account, serve
from tests.support.pipeline import Pipeline
from workers.crons import reconcile_cron

ROUTER = "handlers.routes:ROUTER"
PLATFORM_KEY = "sk_test_platform_acceptance"
CONNECT_SECRET = "whsec_connect_acceptance"


@dataclass
class Studio:
    tenant: Tenant
    razorpay: Account
    stripe: Account
    rzp_secret: str
    rzp_ref: str
    acct: str


@dataclass
class World:
    pipeline: Pipeline
    http: httpx.AsyncClient
    a: Studio
    b: Studio
    rzp_api: RazorpayApiState
    stripe_api: StripeApiState
    rzp_url: str
    stripe_url: str
    sleeps: list[float]

    def api(self, page_size: int = 100) -> HttpGatewayApi:
        async def sleep(seconds: float) -> None:
            self.sleeps.append(seconds)  # recorded, not slept: the fakes answer at once

        return HttpGatewayApi(self.http, razorpay_url=self.rzp_url, stripe_url=self.stripe_url,
                              stripe_event_types=HANDLED_TYPES, max_attempts=4, backoff_base=0.01,
                              backoff_cap=5.0, page_size=page_size, sleep=sleep)

    async def reconcile(self, *accounts: Account, page_size: int = 100, overlap_s: int = 600) -> list[Report]:
        store = account_store(self.pipeline.db)
        fresh = [await store.get(a.id) for a in accounts]  # their current checkpoints
        return await reconcile_accounts(self.pipeline.db, self.pipeline.publisher, self.api(page_size), store=store,
                                        accounts=fresh, now=datetime.now(UTC), window=Window(overlap_s=overlap_s))

    async def razorpay_webhook(self, studio: Studio, event: dict[str, Any], secret: str | None = None,
                               endpoint: Studio | None = None, event_id: str | None = None) -> httpx.Response:
        body, headers = rzp_webhook_request(event, secret or studio.rzp_secret, event_id)
        key = (endpoint or studio).razorpay.endpoint_key
        return await self.http.post(f"/webhooks/razorpay/{key}", content=body, headers=headers)

    async def stripe_webhook(self, event: dict[str, Any]) -> httpx.Response:
        body, headers = stripe_webhook_request(event, CONNECT_SECRET)
        return await self.http.post("/webhooks/stripe/connect", content=body, headers=headers)

    async def rows(self, sql: str, *params: object) -> list[dict[str, Any]]:
        return await self.pipeline.db.query(sql, params)


async def studio(pipeline: Pipeline, rzp_api: RazorpayApiState, stripe_api: StripeApiState, name: str) -> Studio:
    # The worker runs on real time: without this, a capture's receipt notification is deferred to 09:00
    # IST whenever the suite runs between 21:00 and 09:00 IST, and `settle()` waits for it in vain.
    tenant = await make_tenant(pipeline.db, amount_total=1000.0, due_at=None,
                               org_config={"notifications": {"quiet_hours": None}})
    ref, acct, secret = f"acc_{name}Studio000001", f"acct_1{name}Studio00000001", f"rzp-webhook-secret-{name}"
    rzp_api.add_account(ref, f"rzp_test_{name}", f"rzp-key-secret-{name}")
    stripe_api.add_connected_account(acct)
    razorpay = await connect_account(pipeline.db, tenant.org_id, ref=ref, secrets=(secret,),
                                     api_key_id=f"rzp_test_{name}", api_key_secret=f"rzp-key-secret-{name}")
    stripe = await connect_account(pipeline.db, tenant.org_id, gateway="stripe", ref=acct, secrets=())
    return Studio(tenant, razorpay, stripe, secret, ref, acct)


@pytest.fixture
async def world(pipeline: Pipeline) -> AsyncIterator[World]:
    rzp_api, stripe_api = RazorpayApiState(), StripeApiState(PLATFORM_KEY)
    await connect_account(pipeline.db, None, gateway="stripe", ref="acct_1PlatformAcceptance1", secrets=("whsec_pf",),
                          connect_secrets=(CONNECT_SECRET,), api_key_secret=PLATFORM_KEY)
    a = await studio(pipeline, rzp_api, stripe_api, "A")
    b = await studio(pipeline, rzp_api, stripe_api, "B")
    await pipeline.start_worker(ROUTER)
    async with serve(pipeline.ingress_app()) as url, serve_razorpay_api(rzp_api) as rzp_url, \
            serve_stripe_api(stripe_api) as stripe_url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        yield World(pipeline, http, a, b, rzp_api, stripe_api, rzp_url, stripe_url, [])


def notes(t: Tenant) -> dict[str, str]:
    return {"invoice_id": t.invoice_id}


async def transactions(world: World, t: Tenant) -> list[tuple[str, str, float]]:
    rows = await world.rows("SELECT gateway_payment_id, status, amount FROM transactions WHERE invoice_id = ?"
                            " ORDER BY gateway_payment_id, status, amount", t.invoice_id)
    return [(r["gateway_payment_id"], r["status"], r["amount"]) for r in rows]


async def invoice_status(world: World, t: Tenant) -> str:
    return str((await world.rows("SELECT status FROM invoices WHERE id = ?", t.invoice_id))[0]["status"])


# ---- the tenant rule at the edge ---------------------------------------------------------------------------

async def test_a_delivery_signed_for_org_a_naming_org_bs_invoice_is_dead_lettered_wrong_tenant(world: World) -> None:
    a, b = world.a, world.b
    # A's account, A's secret, A's endpoint; the payload names B's invoice, with notes claiming B's tenancy.
    forged = rzp_payment(amount=100_000, notes={"invoice_id": b.tenant.invoice_id, "org_id": b.tenant.org_id,
                                                "branch_id": b.tenant.branch_id})
    response = await world.razorpay_webhook(a, rzp_event("payment.captured", a.rzp_ref, payment=forged))
    assert response.status_code == 200, response.text
    pi = stripe_payment_intent(amount=100_000, metadata={"invoice_id": b.tenant.invoice_id})
    assert (await world.stripe_webhook(stripe_event("payment_intent.succeeded", pi, account=a.acct))).status_code == 200
    await world.pipeline.settle()
    dead = await world.rows("SELECT status, last_error, org_id FROM event_inbox WHERE type = 'payment.captured'")
    assert [(r["status"], r["last_error"].split(":")[0]) for r in dead] == [("dead", "wrong_tenant")] * 2
    assert {r["org_id"] for r in dead} == {a.tenant.org_id}  # filed under the signer's org: B never sees it
    assert await transactions(world, b.tenant) == []
    assert await invoice_status(world, b.tenant) == "issued"
    assert await world.rows("SELECT * FROM gateway_objects") == []
    assert await world.rows("SELECT id FROM event_inbox WHERE type = 'notification.due'") == []


@pytest.mark.parametrize("claim", ["org_only", "other_branch", "other_org"])
async def test_notes_are_checked_against_the_invoice_and_never_choose_the_tenant(world: World, claim: str) -> None:
    """A's own invoice paid into A's account: notes naming only A's org are applied; notes naming another
    branch or org contradict the invoice and are dead-lettered `wrong_tenant`, filed under A all the same."""
    a, b = world.a, world.b
    claimed = {"org_only": {"org_id": a.tenant.org_id},
               "other_branch": {"org_id": a.tenant.org_id, "branch_id": new_id("brn")},
               "other_org": {"org_id": b.tenant.org_id, "branch_id": b.tenant.branch_id}}[claim]
    pay = rzp_payment(amount=100_000, notes={"invoice_id": a.tenant.invoice_id, **claimed})
    response = await world.razorpay_webhook(a, rzp_event("payment.captured", a.rzp_ref, payment=pay))
    assert response.status_code == 200, response.text
    await world.pipeline.settle()
    (row,) = await world.rows("SELECT status, last_error, org_id FROM event_inbox WHERE type = 'payment.captured'")
    assert row["org_id"] == a.tenant.org_id
    if claim == "org_only":
        assert row["status"] == "applied"
        assert [status for _, status, _ in await transactions(world, a.tenant)] == ["paid"]
    else:
        assert (row["status"], row["last_error"].split(":")[0]) == ("dead", "wrong_tenant")
        assert await transactions(world, a.tenant) == []


async def test_a_delivery_signed_with_as_secret_on_bs_endpoint_gets_401_and_writes_nothing(world: World) -> None:
    a, b = world.a, world.b
    pay = rzp_payment(amount=100_000, notes=notes(b.tenant))
    for event in (rzp_event("payment.captured", b.rzp_ref, payment=pay), rzp_event("payment.captured", a.rzp_ref,
                                                                                    payment=pay)):
        response = await world.razorpay_webhook(a, event, endpoint=b)
        assert (response.status_code, response.json()["error"]) == (401, "invalid_signature")
    assert await world.rows("SELECT id FROM event_inbox") == []


async def test_a_rotation_works_per_account(world: World) -> None:
    a, b = world.a, world.b
    store = account_store(world.pipeline.db)
    await store.rotate_webhook_secret(a.razorpay.id, "rzp-webhook-secret-A-2", datetime.now(UTC))

    async def captured(studio: Studio, secret: str, amount: int) -> int:
        pay = rzp_payment(amount=amount, notes=notes(studio.tenant))
        event = rzp_event("payment.captured", studio.rzp_ref, payment=pay)
        return (await world.razorpay_webhook(studio, event, secret=secret)).status_code

    async def eventually(studio: Studio, secret: str, status: int) -> None:
        async def answered() -> bool:
            return await captured(studio, secret, 1) == status
        await world.pipeline.wait_for(answered, within=5, what=f"{secret} → {status}")

    await eventually(a, "rzp-webhook-secret-A-2", 200)  # within the cache TTL (0.2 s here, 5 s by default)
    assert await captured(a, "rzp-webhook-secret-A", 10) == 200  # the old one still verifies retries
    assert await captured(b, "rzp-webhook-secret-A-2", 10) == 401  # A's new secret is A's only
    assert await captured(b, "rzp-webhook-secret-B", 10) == 200  # B untouched
    await store.rotate_webhook_secret(a.razorpay.id, "rzp-webhook-secret-A-2", datetime.now(UTC), drop_old=True)
    await eventually(a, "rzp-webhook-secret-A", 401)
    assert await captured(a, "rzp-webhook-secret-A-2", 10) == 200
    assert await captured(b, "rzp-webhook-secret-B", 10) == 200


# ---- reconciliation ---------------------------------------------------------------------------------------

async def test_withheld_webhooks_are_reconciled_once_and_the_late_ones_apply_nothing(world: World) -> None:
    a, b, t0 = world.a, world.b, now() - 3_000
    rzp_a = world.rzp_api.account(a.rzp_ref)
    p1 = rzp_payment(amount=60_000, notes=notes(a.tenant), created_at=t0)
    p2 = rzp_payment(amount=40_000, notes=notes(a.tenant), created_at=t0 + 10)
    r1 = rzp_refund(payment_id=p1["id"], amount=10_000, created_at=t0 + 20)
    rzp_a.add("payments", p1, p2, *(rzp_payment(amount=5, status="authorized", created_at=t0 + 30 + i)
                                    for i in range(120)))  # 122 payments: two pages of 100
    rzp_a.add("refunds", r1)
    # Only p1's webhook arrives; then the gateway's record of p1 is changed: a mismatch to report.
    delivered = await world.razorpay_webhook(a, rzp_event("payment.captured", a.rzp_ref, payment=p1))
    assert delivered.status_code == 200
    await world.pipeline.settle()
    rzp_a.update("payments", p1["id"], amount=59_000)

    pi = stripe_payment_intent(amount=100_000, metadata=notes(b.tenant), created=t0)
    re = stripe_refund(payment_intent=pi, amount=25_000, created=t0 + 5)
    b_events = [stripe_event("payment_intent.succeeded", pi, account=b.acct, created=t0),
                stripe_event("refund.created", re, account=b.acct, created=t0 + 5),
                *refund_failed_events(re, account=b.acct, created=t0 + 50)]
    for event in b_events:
        world.stripe_api.add_event(event)
    world.rzp_api.fail_next(2)  # Razorpay: 429 twice, no Retry-After
    world.stripe_api.fail_next(1, 429, headers={"Retry-After": "2"})  # Stripe: 429 with Retry-After

    with capture_logs() as logs:
        reports = await world.reconcile(a.razorpay, b.stripe)
        await world.pipeline.settle()
    rzp_report, stripe_report = reports
    assert (rzp_report.error, stripe_report.error) == (None, None)
    assert (rzp_report.listed, rzp_report.found, rzp_report.recorded, rzp_report.published) == (123, 3, 1, 2)
    assert (stripe_report.found, stripe_report.published, stripe_report.pending) == (5, 3, 2)  # 3 reversal siblings
    assert [(m.object_id, m.field, m.ledger, m.gateway) for m in rzp_report.mismatches] == [
        (p1["id"], "amount", "60000", "59000")]
    assert any(e["event"] == "reconcile_mismatch" and e["object_id"] == p1["id"] for e in logs)
    assert world.rzp_api.count("/v1/payments", 429) == 2
    assert world.rzp_api.count("/v1/payments", 200) == 2  # two pages
    assert 2.0 in world.sleeps  # Stripe's Retry-After was honoured
    assert await transactions(world, a.tenant) == sorted([(p1["id"], "paid", 600.0), (p1["id"], "refunded", 100.0),
                                                          (p2["id"], "paid", 400.0)])
    assert await invoice_status(world, a.tenant) == "issued"  # 1000 - 100 refunded
    assert await transactions(world, b.tenant) == [(pi["id"], "paid", 1000.0), (pi["id"], "refunded", -250.0),
                                                   (pi["id"], "refunded", 250.0)]
    assert await invoice_status(world, b.tenant) == "paid"  # the refund failed: its reversal restored it
    reconciled = await world.rows("SELECT count(*) AS n FROM audit_logs WHERE payload_json LIKE ?",
                                  '%"source": "reconciliation"%')
    assert reconciled == [{"n": 5}]
    checkpoints = await world.rows("SELECT id, reconciled_until FROM gateway_accounts WHERE id IN (?, ?)",
                                   a.razorpay.id, b.stripe.id)
    assert {r["reconciled_until"] for r in checkpoints} == {rzp_report.until}

    # The withheld webhooks arrive late: every one is acknowledged as a duplicate; nothing new is applied.
    inbox_before = await world.rows("SELECT count(*) AS n FROM event_inbox")
    late = [await world.razorpay_webhook(a, rzp_event("payment.captured", a.rzp_ref, payment=p2)),
            await world.razorpay_webhook(a, rzp_event("refund.processed", a.rzp_ref, refund=r1, payment=p1))]
    late += [await world.stripe_webhook(event) for event in b_events]
    assert [r.json()["status"] for r in late] == ["duplicate"] * 7
    await world.pipeline.settle()
    assert await world.rows("SELECT count(*) AS n FROM event_inbox") == inbox_before
    assert len(await transactions(world, a.tenant)) == 3
    assert len(await transactions(world, b.tenant)) == 3

    # A second run whose overlap reaches back over all of it finds everything recorded, publishes nothing.
    again = await world.reconcile(a.razorpay, b.stripe, overlap_s=7200)
    assert [(r.published, r.recorded) for r in again] == [(0, 3), (0, 5)]  # Stripe: 3 events of one reversal


async def test_paging_with_small_pages_lists_every_object_once(world: World) -> None:
    a, t0 = world.a, now() - 2_000
    rzp_a = world.rzp_api.account(a.rzp_ref)
    pays = [rzp_payment(amount=15_000, notes=notes(a.tenant), created_at=t0 + i) for i in range(7)]
    rzp_a.add("payments", *pays)
    for i in range(4):
        pi = stripe_payment_intent(amount=1_000, metadata=notes(world.b.tenant), created=t0 + i, pi_id=f"pi_pg{i}x")
        world.stripe_api.add_event(stripe_event("payment_intent.succeeded", pi, account=world.b.acct, created=t0 + i))
    reports = await world.reconcile(a.razorpay, world.b.stripe, page_size=3)
    assert [(r.listed, r.published) for r in reports] == [(7, 7), (4, 4)]
    stripe_pages = [r for r in world.stripe_api.requests if r.path == "/v1/events"]
    assert len(stripe_pages) == 2
    assert ("starting_after", "pi_pg1x") not in stripe_pages[1].query  # cursors are event ids
    assert any(k == "starting_after" and v.startswith("evt_") for k, v in stripe_pages[1].query)
    await world.pipeline.settle()
    assert len(await transactions(world, a.tenant)) == 7
    assert await invoice_status(world, a.tenant) == "paid"


async def test_an_api_that_stays_down_publishes_nothing_and_keeps_the_checkpoint(world: World) -> None:
    a = world.a
    world.rzp_api.account(a.rzp_ref).add("payments", rzp_payment(amount=50_000, notes=notes(a.tenant),
                                                                 created_at=now() - 100))
    world.rzp_api.fail_next(10, 503)
    (report,) = await world.reconcile(a.razorpay)
    assert report.error is not None
    assert "HTTP 503 after 4 attempts" in report.error
    assert report.published == 0
    assert (await world.rows("SELECT reconciled_until FROM gateway_accounts WHERE id = ?", a.razorpay.id)) == [
        {"reconciled_until": None}]
    assert await world.rows("SELECT id FROM event_inbox") == []
    world.rzp_api.clear_faults()
    (report,) = await world.reconcile(a.razorpay)
    assert (report.error, report.published) == (None, 1)


async def test_the_hourly_cron_reconciles_every_connected_account(world: World, redis_url: str) -> None:
    a, b, t0 = world.a, world.b, now() - 500
    world.rzp_api.account(a.rzp_ref).add("payments", rzp_payment(amount=100_000, notes=notes(a.tenant), created_at=t0))
    world.rzp_api.account(b.rzp_ref).add("payments", rzp_payment(amount=100_000, notes=notes(b.tenant), created_at=t0))
    async with Applier.open(world.pipeline.db, redis_url, datetime.now(UTC)) as applier:
        deps = dataclasses.replace(applier.deps, publisher=world.pipeline.publisher,
                                   accounts=account_store(world.pipeline.db), gateway_api=world.api())
        assert await reconcile_cron({"deps": deps}) == 2
        assert await reconcile_cron({"deps": deps}) == 0  # idempotent: arq may run a unique cron twice
    await world.pipeline.settle()
    assert (await invoice_status(world, a.tenant), await invoice_status(world, b.tenant)) == ("paid", "paid")
    checkpoints = await world.rows("SELECT reconciled_until FROM gateway_accounts WHERE status = 'active'")
    assert all(r["reconciled_until"] is not None for r in checkpoints)  # the platform's and both studios' too


async def test_one_account_too_slow_for_the_crons_budget_does_not_starve_the_others(world: World,
                                                                                   redis_url: str) -> None:
    a, b, t0 = world.a, world.b, now() - 500
    world.rzp_api.account(a.rzp_ref).add("payments", rzp_payment(amount=100_000, notes=notes(a.tenant), created_at=t0))
    world.rzp_api.account(b.rzp_ref).add("payments", rzp_payment(amount=100_000, notes=notes(b.tenant), created_at=t0))
    world.rzp_api.slow_next(1, delay_s=30)  # the first Razorpay account listed hangs past any share
    async with Applier.open(world.pipeline.db, redis_url, datetime.now(UTC)) as applier:
        deps = dataclasses.replace(applier.deps, publisher=world.pipeline.publisher,
                                   accounts=account_store(world.pipeline.db), gateway_api=world.api(),
                                   settings=applier.deps.settings.replace(job_timeout=12))  # a 7.2-s budget
        with capture_logs() as logs:
            assert await reconcile_cron({"deps": deps}) == 1  # the other studio's missed payment
    timed_out = [e for e in logs if e["event"] == "reconcile_account_timed_out"]
    assert len(timed_out) == 1
    slow = a if timed_out[0]["account_id"] == a.rzp_ref else b
    checkpoints = {r["id"]: r["reconciled_until"] for r in await world.rows(
        "SELECT id, reconciled_until FROM gateway_accounts WHERE id IN (?, ?)", a.razorpay.id, b.razorpay.id)}
    assert checkpoints[slow.razorpay.id] is None  # it starts again, first, at the next tick
    assert checkpoints[(b if slow is a else a).razorpay.id] is not None


async def test_a_since_that_leaves_a_gap_reconciles_but_does_not_move_the_checkpoint(world: World) -> None:
    a = world.a
    world.rzp_api.account(a.rzp_ref).add("payments", rzp_payment(amount=100_000, notes=notes(a.tenant),
                                                                 created_at=now() - 60))
    store = account_store(world.pipeline.db)
    (report,) = await reconcile_accounts(world.pipeline.db, world.pipeline.publisher, world.api(), store=store,
                                         accounts=[await store.get(a.razorpay.id)], now=datetime.now(UTC),
                                         since=now() - 600)  # later than a first run's start (3 days back)
    assert report.published == 1
    assert (report.checkpoint, (await store.get(a.razorpay.id)).reconciled_until) == (None, None)
