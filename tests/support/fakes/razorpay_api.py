"""A local Razorpay REST API: `GET /v1/payments`, `/v1/refunds`, `/v1/disputes` over real HTTP.

Per-account state: each Razorpay account (`acc_...`) has its own API key pair and its own payments,
refunds and disputes; a request sees only the account its Basic credentials belong to. A partner key may
act for any account through `X-Razorpay-Account: acc_...` (Razorpay Partner Auth).

Wire behaviour, as documented (see /work/notes/money.md for sources and what is assumed):
- auth: `Authorization: Basic base64(key_id:key_secret)`; `basic ...`/`BASIC ...` are refused. Failure:
  401 `{"error": {"code": "BAD_REQUEST_ERROR", "description": "The api key provided is invalid", ...}}`;
- `from`/`to`: unix seconds, inclusive, each within [946684800, 4765046400]; `count`: default 10, max 100;
  `skip`: default 0. Newest first (by `created_at`, then most recently added), so `skip` pages backwards
  in time: a payment created while a reconciler pages shifts later pages (it sees an item twice, never
  misses one) unless the reconciler pins `to`;
- answer: `{"entity": "collection", "count": <items on this page>, "items": [...]}`;
- faults: `state.fail_next(3)` answers the next 3 requests 429 (Razorpay error JSON, no Retry-After);
  `fail_next(1, 500)` a SERVER_ERROR; `fail_next(1, 502)` an edge proxy's HTML page.

    state = RazorpayApiState()
    studio = state.add_account("acc_Studio0000001", "rzp_test_studio1", "secret1")
    studio.add("payments", rzp_payment(amount=50_000))
    async with serve_razorpay_api(state) as base_url:
        ...  # GET {base_url}/v1/payments?from=..&count=100&skip=0 with auth=("rzp_test_studio1", "secret1")
    assert state.count("/v1/payments", 429) == 0
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import copy
import hmac
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.fakes.serving import HTML_502, FakeApi, Fault, fault_response, serving, serving_async

KINDS = ("payments", "refunds", "disputes")
MIN_TS, MAX_TS = 946_684_800, 4_765_046_400


def razorpay_error(description: str, *, code: str = "BAD_REQUEST_ERROR",
                   field_name: str | None = None) -> dict[str, Any]:
    """Razorpay's error body. Validation errors name the `field` and the business/input_validation_failed source."""
    error: dict[str, Any] = {"code": code, "description": description, "source": "NA", "step": "NA",
                             "reason": "NA", "metadata": {}}
    if field_name is not None:
        error.update(source="business", step="payment_initiation", reason="input_validation_failed", field=field_name)
    return {"error": error}


@dataclass
class RazorpayAccount:
    account_id: str
    key_id: str
    key_secret: str
    items: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {k: [] for k in KINDS})
    _state: RazorpayApiState | None = field(default=None, repr=False)

    def add(self, kind: str, *entities: dict[str, Any]) -> None:
        """Add entities (payload builders' dicts) to `payments`, `refunds` or `disputes`; copies are stored."""
        assert self._state is not None
        assert kind in KINDS
        with self._state.lock:
            self.items[kind].extend(copy.deepcopy(e) for e in entities)

    def update(self, kind: str, entity_id: str, **changes: Any) -> dict[str, Any]:
        """Change a stored entity in place (a refund failing, a dispute being lost); returns a copy."""
        assert self._state is not None
        with self._state.lock:
            for entity in self.items[kind]:
                if entity["id"] == entity_id:
                    entity.update(changes)
                    return copy.deepcopy(entity)
        raise KeyError(entity_id)

    def get(self, kind: str, entity_id: str) -> dict[str, Any]:
        assert self._state is not None
        with self._state.lock:
            return copy.deepcopy(next(e for e in self.items[kind] if e["id"] == entity_id))


class RazorpayApiState(FakeApi):
    def __init__(self) -> None:
        super().__init__()
        self.accounts: dict[str, RazorpayAccount] = {}  # by key_id
        self.partners: dict[str, str] = {}  # partner key_id -> secret

    def add_account(self, account_id: str, key_id: str, key_secret: str) -> RazorpayAccount:
        account = RazorpayAccount(account_id, key_id, key_secret, _state=self)
        with self.lock:
            self.accounts[key_id] = account
        return account

    def add_partner(self, key_id: str, key_secret: str) -> None:
        with self.lock:
            self.partners[key_id] = key_secret

    def account(self, account_id: str) -> RazorpayAccount:
        with self.lock:
            return next(a for a in self.accounts.values() if a.account_id == account_id)

    def default_fault(self, status: int) -> Fault:
        if status == 429:  # undocumented body: Razorpay's error envelope is assumed; no Retry-After is documented
            return Fault(429, razorpay_error("Too many requests"))
        if status in (502, 503, 504):
            return Fault(status, text=HTML_502.replace("502 Bad Gateway", f"{status} Bad Gateway"))
        if status >= 500:
            return Fault(status, razorpay_error("We are facing some trouble completing your request at the moment. "
                                                "Please try again shortly.", code="SERVER_ERROR"))
        if status == 401:
            return Fault(401, razorpay_error("The api key provided is invalid"))
        return Fault(status, razorpay_error("The requested URL was not found on the server"))

    # ---- request handling -------------------------------------------------------------------------------

    def _authenticate(self, request: Request) -> RazorpayAccount | None:
        header = request.headers.get("authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            key_id, _, secret = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        with self.lock:
            account = self.accounts.get(key_id)
            if account is not None and hmac.compare_digest(account.key_secret, secret):
                return account
            partner_secret = self.partners.get(key_id)
            on_behalf = request.headers.get("x-razorpay-account")
            if partner_secret is not None and hmac.compare_digest(partner_secret, secret) and on_behalf:
                return next((a for a in self.accounts.values() if a.account_id == on_behalf), None)
        return None

    def _page(self, account: RazorpayAccount, kind: str, request: Request) -> JSONResponse:
        params = request.query_params
        bounds: dict[str, int] = {}
        for name, default, lo, hi in (("from", MIN_TS, MIN_TS, MAX_TS), ("to", MAX_TS, MIN_TS, MAX_TS),
                                      ("count", 10, 1, 100), ("skip", 0, 0, 10**9)):
            raw = params.get(name)
            if raw is None:
                bounds[name] = default
                continue
            try:
                value = int(raw)
            except ValueError:
                return JSONResponse(razorpay_error(f"The {name} must be an integer.", field_name=name), 400)
            if name in ("from", "to") and not lo <= value <= hi:
                return JSONResponse(razorpay_error(f"{name} must be between {MIN_TS} and {MAX_TS}", field_name=name),
                                    400)
            if value > hi:
                return JSONResponse(razorpay_error(f"The {name} may not be greater than {hi}.", field_name=name), 400)
            if value < lo:
                return JSONResponse(razorpay_error(f"The {name} must be at least {lo}.", field_name=name), 400)
            bounds[name] = value
        with self.lock:
            ordered = sorted(enumerate(account.items[kind]), key=lambda p: (p[1]["created_at"], p[0]), reverse=True)
            window = [copy.deepcopy(e) for _, e in ordered if bounds["from"] <= e["created_at"] <= bounds["to"]]
        items = window[bounds["skip"]:bounds["skip"] + bounds["count"]]
        return JSONResponse({"entity": "collection", "count": len(items), "items": items})

    async def handle(self, request: Request) -> Response:
        kind = request.path_params["kind"]
        fault = self.take_fault()
        if fault is not None and fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        account = self._authenticate(request)
        if fault is not None and fault.status is not None:
            response = fault_response(fault)
        elif account is None:
            response = JSONResponse(razorpay_error("The api key provided is invalid"), 401)
        elif kind not in KINDS:
            response = JSONResponse(razorpay_error("The requested URL was not found on the server"), 400)
        else:
            response = self._page(account, kind, request)
        self.record(request, response.status_code, account.account_id if account else None)
        return response

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/{kind}", self.handle, methods=["GET"])])


@asynccontextmanager
async def serve_razorpay_api(state: RazorpayApiState) -> AsyncIterator[str]:
    """Serve `state` on a loopback port; yield the base URL (`http://127.0.0.1:<port>`, paths start at /v1)."""
    async with serving_async(state.app(), "fake-razorpay") as url:
        yield url


@contextmanager
def serve_razorpay_api_sync(state: RazorpayApiState) -> Iterator[str]:
    """As `serve_razorpay_api`, for synchronous tests."""
    with serving(state.app(), "fake-razorpay") as url:
        yield url
