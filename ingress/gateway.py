"""What the payment gateways' endpoints share: from a verified body to a payment fact in the inbox.

    find the account (path key, or the platform's) ─► verify with ITS secrets ─► parse JSON ─► check the
    payload names that account ─► map to a fact (events.mapping) ─► envelope under the account's tenant
    ─► publish under the fact's key

A gateway event type we do not apply is acknowledged and recorded as `ignored`; a redelivery of the same
gateway event, a sibling event of the same fact, or a fact the reconciler published first is
acknowledged as a duplicate (the fact's dedupe key) and applies nothing.

Answers: 401 unknown account, missing/bad/stale signature; 413 too large; 422 not JSON, a field missing
or wrong, a capture of 0, a payload naming another account; 400 missing event id header; 503 not yet
(the payment a refund names is unknown, the database is down, no secret configured).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from events.mapping.fields import Fact, Ignore, MappingError
from events.mapping.resolve import Signer, fact_envelope, ignored_envelope
from events.payments import Gateway, GatewayEvidence
from gateways.accounts import Account, UndecryptableCredentials
from gateways.directory import AccountDirectory
from ingress.pipeline import Accept, IngressContext, IngressError, SignatureRefused, correlate
from ingress.signatures import SignatureError

log = structlog.get_logger("studiovault.ingress")


@dataclass(frozen=True)
class Delivery:
    """A verified, parsed delivery: which account signed it, what it is."""

    gateway: Gateway
    event_id: str
    event_type: str
    doc: dict[str, Any]
    evidence: GatewayEvidence
    signer: Signer | None  # None: verified by the platform, for a connected account we do not know


def signer_of(account: Account) -> Signer:
    return Signer(gateway=account.gateway, account_id=account.account_ref, role=account.role, org_id=account.org_id)


# ---- accounts -----------------------------------------------------------------------------------------------

def directory(ctx: IngressContext) -> AccountDirectory:
    if ctx.deps.accounts is None:
        raise IngressError(503, "not_configured", "no gateway accounts are configured on this ingress")
    return ctx.deps.accounts


async def lookup(ctx: IngressContext, find: Callable[[AccountDirectory], Awaitable[Account | None]]) -> Account:
    """The active account `find` names, or 401 (unknown or disconnected: the same answer, no detail)."""
    try:
        account = await find(directory(ctx))
    except UndecryptableCredentials as exc:
        log.error("account_credentials_unreadable", error=str(exc))  # noqa: TRY400 - no traceback to show
        raise IngressError(503, "not_configured", "the account's credentials cannot be read here") from exc
    if account is None or not account.active:
        raise SignatureRefused(401, "unknown_account", "no connected gateway account answers at this endpoint")
    return account


def secrets_of(values: tuple[str, ...]) -> list[str]:
    """The account's secrets, or 503: nothing can verify (a gateway should retry once one is set)."""
    found = [v for v in values if v.strip()]
    if not found:
        raise IngressError(503, "not_configured", "no webhook secret is configured for this account", retry_after=300)
    return found


def verified(check: Callable[[], object]) -> None:
    """Run a signature check; any failure (missing, malformed, wrong, stale) is 401 and writes nothing."""
    try:
        check()
    except SignatureError as exc:
        raise SignatureRefused(401, exc.code, str(exc)) from exc


# ---- parsing ------------------------------------------------------------------------------------------------

def parse_json(body: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise IngressError(422, "invalid_json", f"the body is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise IngressError(422, "invalid_json", "the body must be a JSON object")
    return doc


def evidence_for(request: Request, body: bytes, *, event_id: str, event_type: str, headers: tuple[str, ...],
                 received_at: datetime) -> GatewayEvidence:
    kept = {h: request.headers[h][:500] for h in (*headers, "user-agent", "content-type") if h in request.headers}
    return GatewayEvidence(gateway_event_id=event_id, gateway_event_type=event_type,
                           body_sha256=hashlib.sha256(body).hexdigest(), headers=kept, received_at=received_at)


def refusal(exc: MappingError) -> IngressError:
    extra = {"field": exc.field} if exc.field else {}
    return IngressError(exc.status, exc.code, exc.detail, retry_after=exc.retry_after, **extra)


# ---- the endpoint -------------------------------------------------------------------------------------------

Receive = Callable[[Request, IngressContext, bytes, datetime], Awaitable[Delivery]]
Mapper = Callable[[str, dict[str, Any]], Fact | Ignore]


def accept_with(gateway: Gateway, receive: Receive, mapper: Mapper) -> Accept:
    """A gateway endpoint's work: `receive` finds the account, verifies and identifies; `mapper` maps; then
    one inbox write."""

    async def accept(request: Request, body: bytes, received_at: datetime, ctx: IngressContext) -> Response:
        delivery = await receive(request, ctx, body, received_at)
        try:
            correlate(delivery.event_id)  # the gateway's event id: the delivery's id from end to end
            mapped = mapper(delivery.event_type, delivery.doc) if delivery.signer else Ignore(
                "verified by the platform for a connected account no org has connected")
            if isinstance(mapped, Ignore):
                envelope = ignored_envelope(delivery.signer, gateway, delivery.evidence, mapped.reason)
                published = await ctx.publish(envelope, status="ignored", note=mapped.reason)
            else:
                assert delivery.signer is not None  # noqa: S101 - an unknown account maps to Ignore above
                envelope = await fact_envelope(ctx.db, delivery.signer, mapped, delivery.evidence)
                published = await ctx.publish(envelope)
        except MappingError as exc:
            raise refusal(exc) from exc
        outcome = "duplicate" if published.duplicate else ("ignored" if isinstance(mapped, Ignore) else "accepted")
        log.info("webhook_accepted", source=gateway, gateway_event_id=delivery.event_id,
                 gateway_event_type=delivery.event_type, event_id=published.event_id, outcome=outcome,
                 account_id=delivery.signer.account_id if delivery.signer else None, org_id=envelope.org_id,
                 dedupe_key=envelope.dedupe_key)
        return JSONResponse({"status": outcome, "event_id": published.event_id})

    return accept
