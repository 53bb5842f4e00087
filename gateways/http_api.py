"""The gateways' list APIs over httpx (the `GatewayApi` port), with retries that respect rate limits.

Razorpay: `GET /v1/payments|refunds|disputes?from&to&count=100&skip`, Basic auth with the account's key
pair, newest first, paged with `skip` until a short page; `to` is pinned for the whole listing so new
objects cannot shift the pages. Stripe: `GET /v1/events?created[gte]&created[lte]&limit=100&types[]`,
Bearer with the platform's secret key and `Stripe-Account` for a connected account, paged with
`starting_after` while `has_more`.

A 429, a 5xx, a timeout or a connection failure is retried up to `max_attempts` times per request with
exponential backoff and equal jitter, or after `Retry-After` seconds when the answer gives it (capped);
then `GatewayUnavailable`. Any other 4xx is `GatewayRefused` at once. Branching is on the status code,
never on the body (Razorpay's 429 body is undocumented; Stripe's 429 is an `invalid_request_error`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
import structlog

from core.parse import retry_after_seconds
from gateways.port import ApiAccess, GatewayRefused, GatewayUnavailable, Listed, ListedKind

log = structlog.get_logger("studiovault.gateways")

RAZORPAY_KINDS: tuple[ListedKind, ...] = ("payments", "refunds", "disputes")
Params = list[tuple[str, str | int | float | bool | None]]
PAGE = 100
_RETRIED = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


def retry_after(response: httpx.Response) -> float | None:
    """`Retry-After` in seconds (only the delta-seconds form; an HTTP date is ignored)."""
    return retry_after_seconds(response.headers.get("retry-after"))


class HttpGatewayApi:
    def __init__(self, http: httpx.AsyncClient, *, razorpay_url: str, stripe_url: str,
                 stripe_event_types: tuple[str, ...], timeout_s: float = 15.0, max_attempts: int = 6,
                 backoff_base: float = 1.0, backoff_cap: float = 60.0, page_size: int = PAGE,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.http = http
        self.razorpay_url = razorpay_url.rstrip("/")
        self.stripe_url = stripe_url.rstrip("/")
        self.stripe_event_types = stripe_event_types
        self.timeout_s, self.max_attempts = timeout_s, max_attempts
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.page_size = page_size  # both gateways allow at most 100
        self.sleep = sleep
        self.requests = 0
        self.retries = 0

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        given = retry_after(response) if response is not None else None
        if given is not None:
            return min(given, self.backoff_cap)
        ceiling = min(self.backoff_cap, self.backoff_base * 2.0 ** (attempt - 1))
        return ceiling / 2 + random.random() * ceiling / 2  # noqa: S311 - jitter, not cryptography

    async def _get(self, url: str, params: Params, headers: Mapping[str, str],
                   auth: tuple[str, str] | None) -> dict[str, Any]:
        for attempt in range(1, self.max_attempts + 1):
            response: httpx.Response | None = None
            self.requests += 1
            try:
                response = await self.http.get(url, params=params, headers=dict(headers), auth=auth,
                                               timeout=self.timeout_s)
            except _RETRIED as exc:
                problem = f"{type(exc).__name__}"
            else:
                if response.status_code < 300:
                    body: dict[str, Any] = response.json()
                    return body
                if response.status_code != 429 and response.status_code < 500:
                    raise GatewayRefused(f"HTTP {response.status_code} from {url}: {response.text[:300]}")
                problem = f"HTTP {response.status_code}"
            if attempt == self.max_attempts:
                raise GatewayUnavailable(f"{url}: {problem} after {attempt} attempts")
            delay = self._delay(attempt, response)
            self.retries += 1
            log.warning("gateway_api_retry", url=url, problem=problem, attempt=attempt, retry_in_s=round(delay, 3))
            await self.sleep(delay)
        raise GatewayUnavailable(url)  # pragma: no cover - the loop returns or raises

    async def list_since(self, access: ApiAccess, since: int, until: int,
                         on_page: Callable[[int], None] | None = None) -> list[Listed]:
        if access.gateway == "razorpay":
            return await self._razorpay(access, since, until, on_page)
        return await self._stripe(access, since, until, on_page)

    async def _razorpay(self, access: ApiAccess, since: int, until: int,
                        on_page: Callable[[int], None] | None) -> list[Listed]:
        if access.key_id is None:
            raise GatewayRefused("a Razorpay account needs an API key id and secret to be reconciled")
        headers = {"X-Razorpay-Account": access.on_behalf_of} if access.on_behalf_of else {}
        found: list[Listed] = []
        for kind in RAZORPAY_KINDS:
            skip = 0
            while True:
                page = await self._get(f"{self.razorpay_url}/v1/{kind}",
                                       [("from", since), ("to", until), ("count", self.page_size), ("skip", skip)],
                                       headers,
                                       (access.key_id, access.key_secret))
                items = page.get("items") or []
                found += [Listed(kind, item, int(item.get("created_at") or 0)) for item in items]
                if on_page:
                    on_page(len(items))
                if len(items) < self.page_size:
                    break
                skip += len(items)
        return found

    async def _stripe(self, access: ApiAccess, since: int, until: int,
                      on_page: Callable[[int], None] | None) -> list[Listed]:
        headers = {"Authorization": f"Bearer {access.key_secret}"}
        if access.on_behalf_of:
            headers["Stripe-Account"] = access.on_behalf_of
        base: Params = [("created[gte]", since), ("created[lte]", until), ("limit", self.page_size)]
        base += [("types[]", t) for t in self.stripe_event_types]
        found: list[Listed] = []
        after: str | None = None
        while True:
            params = base + ([("starting_after", after)] if after else [])
            page = await self._get(f"{self.stripe_url}/v1/events", params, headers, None)
            events = page.get("data") or []
            found += [Listed("events", event, int(event.get("created") or 0)) for event in events]
            if on_page:
                on_page(len(events))
            if not page.get("has_more") or not events:
                return found
            after = str(events[-1]["id"])
