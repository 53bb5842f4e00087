"""The port the reconciler lists gateway objects through (`gateways.http_api` implements it over httpx).

`list_since` returns every object created in `[since, until]` (unix seconds, inclusive) that the
gateway's list API shows for one account: Razorpay's payments, refunds and disputes (their current
state), or Stripe's events (`/v1/events`, the facts' history, for the last 30 days). Rate limits and
outages are retried inside (backing off, honouring Retry-After); what is still failing after that is
`GatewayUnavailable`, and nothing of the listing is returned — a partial listing would let a checkpoint
advance over what was never seen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

ListedKind = Literal["payments", "refunds", "disputes", "events"]


class GatewayApiError(Exception):
    """Base of the listing errors."""


class GatewayUnavailable(GatewayApiError):
    """429s, 5xx or connection failures outlasted the retries: try again later."""


class GatewayRefused(GatewayApiError):
    """The gateway refused the request (401/403/400): the credentials or the access are wrong."""


@dataclass(frozen=True)
class ApiAccess:
    """How to call a gateway's API for one account (built from our account rows, never logged)."""

    gateway: Literal["razorpay", "stripe"]
    key_secret: str = field(repr=False)
    key_id: str | None = None  # Razorpay: the key id (Basic auth user)
    on_behalf_of: str | None = None  # Stripe Connect: `Stripe-Account: acct_...`


@dataclass(frozen=True)
class Listed:
    kind: ListedKind
    item: dict[str, Any]
    created: int  # unix seconds


class GatewayApi(Protocol):
    async def list_since(self, access: ApiAccess, since: int, until: int,
                         on_page: Callable[[int], None] | None = None) -> list[Listed]:
        """Everything created in [since, until]; `on_page(n)` after each page of n items."""
        ...
