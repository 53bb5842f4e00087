"""Self-test of the fake gateways: `.venv/bin/python -m tests.support.fakes.selftest` (from the repo root).

Starts each fake on a real socket, pages through it with httpx, scripts 429/5xx answers, and, when the
gateways' own SDKs are installed (dev dependencies), checks that they parse the fakes and the signed
webhook bodies the way they parse the real gateways'.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from tests.support.fakes.payloads import (
    now,
    rzp_dispute,
    rzp_event,
    rzp_payment,
    rzp_refund,
    rzp_webhook_request,
    stripe_webhook_request,
)
from tests.support.fakes.razorpay_api import RazorpayApiState, serve_razorpay_api
from tests.support.fakes.stripe_api import (
    StripeApiState,
    refund_failed_events,
    serve_stripe_api,
    stripe_event,
    stripe_payment_intent,
    stripe_refund,
)

KINDS = ("payment_intent.succeeded", "refund.updated", "charge.dispute.created")


async def razorpay_selftest() -> None:
    state = RazorpayApiState()
    studio = state.add_account("acc_Studio00000001", "rzp_test_studio1", "s3cret-1")
    other = state.add_account("acc_Other000000001", "rzp_test_other01", "s3cret-2")
    t0 = now() - 3_600
    pays = [rzp_payment(amount=1_000 + i, created_at=t0 + i, notes={"invoice_id": f"inv_{i}"}) for i in range(25)]
    studio.add("payments", *pays)
    other.add("payments", rzp_payment(amount=7, created_at=t0))
    studio.add("refunds", rzp_refund(payment_id=pays[0]["id"], amount=1_000, status="pending", created_at=t0 + 30))
    studio.add("disputes", rzp_dispute(payment_id=pays[1]["id"], amount=1_001, status="lost", created_at=t0 + 40))
    async with serve_razorpay_api(state) as url, httpx.AsyncClient(base_url=url, auth=("rzp_test_studio1",
                                                                                       "s3cret-1")) as http:
        seen: list[dict[str, Any]] = []
        for skip in range(0, 30, 10):
            page = (await http.get("/v1/payments", params={"from": t0, "count": 10, "skip": skip})).json()
            assert page["entity"] == "collection"
            assert page["count"] == len(page["items"])
            seen += page["items"]
        assert [p["id"] for p in seen] == [p["id"] for p in reversed(pays)], "newest first, every payment once"
        window = (await http.get("/v1/payments", params={"from": t0 + 5, "to": t0 + 9})).json()
        assert [p["amount"] for p in window["items"]] == [1_009, 1_008, 1_007, 1_006, 1_005], "from/to inclusive"
        assert (await http.get("/v1/payments", params={"count": 101})).status_code == 400
        refund = (await http.get("/v1/refunds")).json()["items"][0]
        assert refund["status"] == "pending"
        assert refund["payment_id"] == pays[0]["id"]
        studio.update("refunds", refund["id"], status="failed")
        assert (await http.get("/v1/refunds")).json()["items"][0]["status"] == "failed"
        dispute = (await http.get("/v1/disputes")).json()["items"][0]
        assert dispute["status"] == "lost"
        assert dispute["amount_deducted"] == 1_001
        bad = await http.get("/v1/payments", auth=("rzp_test_studio1", "wrong"))
        assert bad.status_code == 401
        assert bad.json()["error"]["code"] == "BAD_REQUEST_ERROR"
        assert (await http.get("/v1/payments", auth=("rzp_test_other01", "s3cret-2"))).json()["count"] == 1
        state.add_partner("rzp_test_partner", "p-secret")
        partner = await http.get("/v1/payments", auth=("rzp_test_partner", "p-secret"),
                                 headers={"X-Razorpay-Account": "acc_Studio00000001"})
        assert partner.json()["count"] == 10

        before = state.count("/v1/payments")
        state.fail_next(2)  # 429, twice
        answers = [await http.get("/v1/payments") for _ in range(3)]
        assert [a.status_code for a in answers] == [429, 429, 200]
        assert "retry-after" not in answers[0].headers
        assert answers[0].json()["error"]["code"] == "BAD_REQUEST_ERROR"
        assert state.count("/v1/payments") == before + 3
        assert state.count("/v1/payments", 429) == 2
        state.fail_next(1, 502)
        gateway = await http.get("/v1/payments")
        assert gateway.status_code == 502
        assert gateway.headers["content-type"].startswith("text/html")
        state.fail_next(1, 500)
        assert (await http.get("/v1/payments")).json()["error"]["code"] == "SERVER_ERROR"
        await asyncio.to_thread(_razorpay_sdk, url)

    event = rzp_event("payment.captured", studio.account_id, payment=pays[3])
    body, headers = rzp_webhook_request(event, "whsec-rzp-studio")
    assert json.loads(body)["payload"]["payment"]["entity"] == pays[3], "webhook entity == API item"
    try:
        import razorpay  # type: ignore[import-untyped]  # noqa: PLC0415
    except ImportError:
        return
    razorpay.Client(auth=("k", "s")).utility.verify_webhook_signature(
        body.decode(), headers["x-razorpay-signature"], "whsec-rzp-studio")


def _razorpay_sdk(url: str) -> None:
    try:
        import razorpay  # noqa: PLC0415
    except ImportError:
        return
    client = razorpay.Client(auth=("rzp_test_studio1", "s3cret-1"), base_url=url)
    assert len(client.payment.all({"count": 5})["items"]) == 5


async def stripe_selftest() -> None:
    state = StripeApiState("sk_test_platform")
    state.add_connected_account("acct_1Studio")
    t0 = now() - 3_600
    pis = [stripe_payment_intent(amount=500 + i, created=t0 + i) for i in range(15)]
    connected = [state.add_event(stripe_event(KINDS[i % 3], pis[i], account="acct_1Studio", created=t0 + i))
                 for i in range(15)]
    for i in range(3):
        state.add_event(stripe_event("payment_intent.succeeded", pis[i], created=t0 + i))
    studio = {"Stripe-Account": "acct_1Studio"}
    async with serve_stripe_api(state) as url, httpx.AsyncClient(
            base_url=url, headers={"Authorization": "Bearer sk_test_platform"}) as http:
        seen: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 4}
        while True:
            page = (await http.get("/v1/events", params=params, headers=studio)).json()
            assert page["object"] == "list"
            assert page["url"] == "/v1/events"
            seen += page["data"]
            if not page["has_more"]:
                break
            params = {"limit": 4, "starting_after": page["data"][-1]["id"]}
        assert [e["id"] for e in seen] == [e["id"] for e in reversed(connected)], "newest first, each once"
        assert all(e["account"] == "acct_1Studio" for e in seen)
        newer = (await http.get("/v1/events", params={"limit": 4, "ending_before": seen[-1]["id"]},
                                headers=studio)).json()
        assert [e["id"] for e in newer["data"]] == [e["id"] for e in seen[-5:-1]]
        assert newer["has_more"]
        for query in ({"types[]": "charge.dispute.created"}, {"types[0]": "charge.dispute.created"},
                      {"type": "charge.dispute.*"}):
            found = (await http.get("/v1/events", params={**query, "limit": 100}, headers=studio)).json()["data"]
            assert len(found) == 5, query
            assert {e["type"] for e in found} == {"charge.dispute.created"}, query
        recent = (await http.get("/v1/events", params={"created[gte]": t0 + 10}, headers=studio)).json()
        assert len(recent["data"]) == 5
        platform = (await http.get("/v1/events")).json()["data"]
        assert len(platform) == 3
        assert all("account" not in e for e in platform)
        unknown = await http.get("/v1/events", headers={"Stripe-Account": "acct_nope"})
        assert unknown.status_code == 403
        assert unknown.json()["error"]["code"] == "account_invalid"
        assert (await http.get("/v1/events", headers={"Authorization": "Bearer sk_test_wrong"})).status_code == 401
        state.fail_next(2)
        answers = [await http.get("/v1/events", headers=studio) for _ in range(3)]
        assert [a.status_code for a in answers] == [429, 429, 200]
        error = answers[0].json()["error"]
        assert error["type"] == "invalid_request_error"
        assert error["code"] == "rate_limit"
        assert "retry-after" not in answers[0].headers
        assert state.count("/v1/events", 429) == 2
        state.fail_next(1, 503)
        assert (await http.get("/v1/events")).status_code == 503
        state.clock = lambda: t0 + 31 * 86_400
        assert (await http.get("/v1/events", headers=studio)).json()["data"] == [], "older than 30 days"
        state.clock = lambda: float(now())
        await asyncio.to_thread(_stripe_sdk, url, state)

    refund = stripe_refund(payment_intent=pis[0])
    failures = refund_failed_events(refund, account="acct_1Studio")
    assert len({e["id"] for e in failures}) == 3
    assert {e["data"]["object"]["id"] for e in failures} == {refund["id"]}
    body, headers = stripe_webhook_request(connected[0], "whsec_test_connect")
    assert json.loads(body) == connected[0], "webhook body == listed event"
    try:
        import stripe  # noqa: PLC0415
    except ImportError:
        return
    verified = stripe.Webhook.construct_event(body, headers["stripe-signature"], "whsec_test_connect")
    assert verified.id == connected[0]["id"]


def _stripe_sdk(url: str, state: StripeApiState) -> None:
    try:
        import stripe  # noqa: PLC0415
    except ImportError:
        return
    client = stripe.StripeClient("sk_test_platform", base_addresses={"api": url}, max_network_retries=2)
    listed = client.v1.events.list({"limit": 2, "types": ["refund.updated", "charge.dispute.created"]},
                                   {"stripe_account": "acct_1Studio"})
    assert len(list(listed.auto_paging_iter())) == 10, "stripe-python's types[N] encoding and auto-paging"
    before = state.count("/v1/events")
    state.lock_timeout(1)  # Stripe-Should-Retry: true -> the SDK retries by itself
    assert len(client.v1.events.list({"limit": 1}).data) == 1
    assert state.count("/v1/events") == before + 2
    state.fail_next(1)  # a plain rate limit: the SDK does not retry it
    try:
        client.v1.events.list({"limit": 1})
    except stripe.RateLimitError:
        pass
    else:
        raise AssertionError("stripe-python should surface a 429 as RateLimitError")


async def main() -> None:
    await razorpay_selftest()
    await stripe_selftest()
    print("OK")  # noqa: T201


if __name__ == "__main__":
    asyncio.run(main())
