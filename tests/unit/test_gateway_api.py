"""The list-API adapter's failure policy against a fake transport: what is retried, what is not."""

from __future__ import annotations

import httpx
import pytest

from gateways.http_api import HttpGatewayApi, retry_after
from gateways.port import ApiAccess, GatewayRefused, GatewayUnavailable


def api(responses: list[httpx.Response]) -> tuple[HttpGatewayApi, list[float], list[httpx.Request]]:
    seen: list[httpx.Request] = []
    sleeps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return responses[min(len(seen), len(responses)) - 1]

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return HttpGatewayApi(client, razorpay_url="https://rzp.test", stripe_url="https://stripe.test",
                          stripe_event_types=("payment_intent.succeeded",), max_attempts=3, backoff_base=1.0,
                          backoff_cap=30.0, sleep=sleep), sleeps, seen


STRIPE = ApiAccess("stripe", "sk_test_x", on_behalf_of="acct_1X")
EMPTY = httpx.Response(200, json={"object": "list", "data": [], "has_more": False})


async def test_bad_credentials_are_refused_at_once_without_retrying() -> None:
    adapter, sleeps, seen = api([httpx.Response(401, json={"error": {"message": "Invalid API Key"}})])
    with pytest.raises(GatewayRefused, match="401"):
        await adapter.list_since(STRIPE, 0, 10)
    assert (len(seen), sleeps) == (1, [])


async def test_429_and_5xx_back_off_exponentially_then_give_up() -> None:
    adapter, sleeps, seen = api([httpx.Response(429), httpx.Response(502, text="<html>bad gateway</html>"),
                                 httpx.Response(503)])
    with pytest.raises(GatewayUnavailable, match="HTTP 503 after 3 attempts"):
        await adapter.list_since(STRIPE, 0, 10)
    assert len(seen) == 3
    assert 0.5 <= sleeps[0] <= 1.0  # equal jitter: in [d/2, d], d = 1 s
    assert 1.0 <= sleeps[1] <= 2.0  # then 2 s


async def test_retry_after_is_honoured_and_capped() -> None:
    adapter, sleeps, _ = api([httpx.Response(429, headers={"Retry-After": "7"}),
                              httpx.Response(429, headers={"Retry-After": "3600"}), EMPTY])
    assert await adapter.list_since(STRIPE, 0, 10) == []
    assert sleeps == [7.0, 30.0]


async def test_stripe_requests_act_for_the_connected_account() -> None:
    adapter, _, seen = api([EMPTY])
    await adapter.list_since(STRIPE, 100, 200)
    request = seen[0]
    assert request.headers["stripe-account"] == "acct_1X"
    assert request.headers["authorization"] == "Bearer sk_test_x"
    assert ("created[gte]", "100") in request.url.params.multi_items()
    assert ("types[]", "payment_intent.succeeded") in request.url.params.multi_items()


@pytest.mark.parametrize(("header", "seconds"), [("2", 2.0), ("0.5", 0.5), ("Wed, 21 Oct 2015 07:28:00 GMT", None),
                                                 ("", None), ("-1", None)])
def test_retry_after_reads_delta_seconds_only(header: str, seconds: float | None) -> None:
    assert retry_after(httpx.Response(429, headers={"Retry-After": header})) == seconds
