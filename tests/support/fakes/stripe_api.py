"""A local Stripe API: `GET /v1/events` (and `GET /v1/events/{id}`) over real HTTP, with Connect streams.

The platform has its own event stream; every connected account (`acct_...`) has another. A request with
the platform's secret key and no `Stripe-Account` header reads the platform stream; with
`Stripe-Account: acct_...` it reads that connected account's stream (403 `account_invalid` for an account
not connected to the platform).

Wire behaviour (see /work/notes/money.md for sources and what is assumed):
- auth: `Authorization: Bearer sk_...` (or Basic with the key as user name); 401 `invalid_request_error`;
- `limit` 1..100 (default 10); `starting_after` / `ending_before` (object ids, mutually exclusive);
  `created` / `created[gt|gte|lt|lte]`; `types[]` or `types[N]` (stripe-python's form; up to 20) or `type`
  (with `*` wildcards, not together with `types`). Newest first (`created`, then most recently added);
- answer: `{"object": "list", "data": [...], "has_more": bool, "url": "/v1/events"}`;
- retention: events older than `retention_days` (30) are no longer listed (set `state.clock` to move time);
- faults: `fail_next(2)` answers 429 with Stripe's body (`type: invalid_request_error`, `code: rate_limit`)
  and `Stripe-Rate-Limited-Reason`, but no Retry-After; `fail_next(1, 500)` an `api_error`; 502 an HTML page.

    state = StripeApiState("sk_test_platform")
    state.add_connected_account("acct_1Studio")
    state.add_event(stripe_event("payment_intent.succeeded", pi, account="acct_1Studio"))
    async with serve_stripe_api(state) as base_url: ...
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import fnmatch
import hmac
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.fakes.payloads import (
    STRIPE_API_VERSION,
    refund_failed_events,
    stripe_dispute,
    stripe_event,
    stripe_payment_intent,
    stripe_refund,
)
from tests.support.fakes.serving import HTML_502, FakeApi, Fault, fault_response, serving, serving_async

__all__ = ["StripeApiState", "refund_failed_events", "serve_stripe_api", "serve_stripe_api_sync", "stripe_dispute",
           "stripe_error", "stripe_event", "stripe_payment_intent", "stripe_refund"]

PLATFORM = ""  # the stream key of the platform's own events
_TYPES_KEY = re.compile(r"^types\[\d*\]$")
_CREATED_KEY = re.compile(r"^created(?:\[(gt|gte|lt|lte)\])?$")
_NO_KEY = ("You did not provide an API key. You need to provide your API key in the Authorization header, using "
           "Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication"
           " for details, or we can help at https://support.stripe.com/.")


def stripe_error(message: str, *, type_: str = "invalid_request_error", code: str | None = None,
                 param: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": type_}
    if code is not None:
        error.update(code=code, doc_url=f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}")
    if param is not None:
        error["param"] = param
    return {"error": error}


def _masked(key: str) -> str:
    prefix = key[:8] if key.startswith(("sk_test_", "sk_live_")) else ""
    return prefix + "*" * max(len(key) - len(prefix) - 4, 0) + key[-4:]


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.body = stripe_error(message, param=param, code=code)


class StripeApiState(FakeApi):
    def __init__(self, *secret_keys: str, retention_days: int = 30, api_version: str = STRIPE_API_VERSION) -> None:
        super().__init__()
        self.secret_keys = set(secret_keys or ("sk_test_platform",))
        self.streams: dict[str, list[dict[str, Any]]] = {PLATFORM: []}
        self.retention_days = retention_days
        self.api_version = api_version
        self.clock: Callable[[], float] = time.time

    def add_connected_account(self, account_id: str) -> None:
        with self.lock:
            self.streams.setdefault(account_id, [])

    def add_event(self, event: dict[str, Any], account: str | None = None) -> dict[str, Any]:
        """Append to the stream of `account` (default: the event's own `account`, else the platform's)."""
        stream = account if account is not None else event.get("account", PLATFORM)
        with self.lock:
            if stream not in self.streams:
                raise KeyError(f"{stream} is not connected: add_connected_account() first")
            self.streams[stream].append(copy.deepcopy(event))
        return event

    def events(self, account: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(self.streams[account or PLATFORM])

    def default_fault(self, status: int) -> Fault:
        if status == 429:
            return Fault(429, stripe_error("Request rate limit exceeded. You can learn more about rate limits here "
                                           "https://stripe.com/docs/rate-limits.", code="rate_limit"),
                         headers={"Stripe-Rate-Limited-Reason": "global-rate"})
        if status in (502, 503, 504):
            return Fault(status, text=HTML_502.replace("502 Bad Gateway", f"{status} Bad Gateway"))
        if status >= 500:
            return Fault(status, stripe_error("An unknown error occurred", type_="api_error"))
        return Fault(status, stripe_error(f"HTTP {status}"))

    def lock_timeout(self, n: int = 1) -> None:
        """The other 429: an object lock, which Stripe marks retryable (`Stripe-Should-Retry: true`)."""
        self.fail_next(n, 429, body=stripe_error(
            "This object cannot be accessed right now because another API request or Stripe process is currently "
            "accessing it. If you see this error intermittently, retry the request.", code="lock_timeout"),
            headers={"Stripe-Should-Retry": "true"})

    # ---- request handling -------------------------------------------------------------------------------

    def _auth(self, request: Request) -> tuple[str | None, Response | None]:
        """The stream the request reads, or the error answer."""
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        key = credential.strip()
        if scheme.lower() == "basic":
            try:
                key = base64.b64decode(key, validate=True).decode().partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                key = ""
        elif scheme.lower() != "bearer":
            key = ""
        if not key:
            return None, JSONResponse(stripe_error(_NO_KEY), 401)
        if not any(hmac.compare_digest(key, k) for k in self.secret_keys):
            return None, JSONResponse(stripe_error(f"Invalid API Key provided: {_masked(key)}"), 401)
        account = request.headers.get("stripe-account")
        if account is None:
            return PLATFORM, None
        if account not in self.streams or account == PLATFORM:
            return None, JSONResponse(stripe_error(
                f"The provided key '{_masked(key)}' does not have access to account '{account}' (or that account "
                "does not exist). Application access may have been revoked.", code="account_invalid"), 403)
        return account, None

    def _filters(self, request: Request) -> tuple[int, Callable[[dict[str, Any]], bool]]:
        pairs = request.query_params.multi_items()
        params = dict(pairs)
        try:
            limit = int(params.get("limit", "10"))
        except ValueError:
            raise _BadRequest(f"Invalid integer: {params['limit']}", "limit") from None
        if not 1 <= limit <= 100:
            raise _BadRequest("This value must be greater than or equal to 1 and less than or equal to 100.", "limit")
        types = [v for k, v in pairs if _TYPES_KEY.match(k)]
        if types and "type" in params:
            raise _BadRequest("You may only specify one of these parameters: type, types.", "types")
        if len(types) > 20:
            raise _BadRequest("You may pass at most 20 event types.", "types")
        created: list[tuple[str, int]] = []
        for k, v in pairs:
            match = _CREATED_KEY.match(k)
            if match:
                try:
                    created.append((match.group(1) or "eq", int(v)))
                except ValueError:
                    raise _BadRequest(f"Invalid integer: {v}", k) from None
        pattern = params.get("type")
        oldest = self.clock() - self.retention_days * 86_400
        ops: dict[str, Callable[[int, int], bool]] = {"eq": int.__eq__, "gt": int.__gt__, "gte": int.__ge__,
                                                      "lt": int.__lt__, "lte": int.__le__}

        def keep(event: dict[str, Any]) -> bool:
            return (event["created"] >= oldest and (not types or event["type"] in types)
                    and (pattern is None or fnmatch.fnmatchcase(event["type"], pattern))
                    and all(ops[op](event["created"], value) for op, value in created))

        return limit, keep

    def _list(self, stream: str, request: Request) -> JSONResponse:
        params = request.query_params
        after, before = params.get("starting_after"), params.get("ending_before")
        if after and before:
            raise _BadRequest("You may only specify one of these parameters: ending_before, starting_after.")
        limit, keep = self._filters(request)
        with self.lock:
            ranked = sorted(enumerate(self.streams[stream]), key=lambda p: (p[1]["created"], p[0]), reverse=True)
            events = [copy.deepcopy(e) for _, e in ranked]
        position = {e["id"]: i for i, e in enumerate(events)}
        cursor = after or before
        if cursor is not None and cursor not in position:
            raise _BadRequest(f"No such event: '{cursor}'", "starting_after" if after else "ending_before",
                              "resource_missing")
        if after:
            candidates = [e for e in events[position[after] + 1:] if keep(e)]
            page = candidates[:limit]
        elif before:
            candidates = [e for e in events[:position[before]] if keep(e)]
            page = candidates[-limit:]
        else:
            candidates = [e for e in events if keep(e)]
            page = candidates[:limit]
        return JSONResponse({"object": "list", "data": page, "has_more": len(candidates) > limit,
                             "url": "/v1/events"})

    def _retrieve(self, stream: str, event_id: str) -> JSONResponse:
        with self.lock:
            found = next((copy.deepcopy(e) for e in self.streams[stream] if e["id"] == event_id), None)
        if found is None:
            return JSONResponse(stripe_error(f"No such event: '{event_id}'", code="resource_missing", param="id"), 404)
        return JSONResponse(found)

    async def handle(self, request: Request) -> Response:
        fault = self.take_fault()
        if fault is not None and fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        stream, refused = self._auth(request)
        if fault is not None and fault.status is not None:
            response = fault_response(fault)
        elif refused is not None:
            response = refused
        else:
            assert stream is not None
            try:
                event_id = request.path_params.get("event_id")
                response = self._retrieve(stream, event_id) if event_id else self._list(stream, request)
            except _BadRequest as bad:
                response = JSONResponse(bad.body, 400)
        response.headers["Request-Id"] = f"req_{secrets.token_hex(7)}"
        response.headers["Stripe-Version"] = self.api_version
        self.record(request, response.status_code, None if stream is None else (stream or "platform"))
        return response

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/events", self.handle, methods=["GET"]),
                                 Route("/v1/events/{event_id}", self.handle, methods=["GET"])])


@asynccontextmanager
async def serve_stripe_api(state: StripeApiState) -> AsyncIterator[str]:
    """Serve `state` on a loopback port; yield the base URL (paths start at /v1)."""
    async with serving_async(state.app(), "fake-stripe") as url:
        yield url


@contextmanager
def serve_stripe_api_sync(state: StripeApiState) -> Iterator[str]:
    """As `serve_stripe_api`, for synchronous tests (or stripe-python's own client)."""
    with serving(state.app(), "fake-stripe") as url:
        yield url
