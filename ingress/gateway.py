"""What the payment gateways' endpoints share: from a verified body to a payment fact in the inbox.

    verify signature (the source) ─► parse JSON ─► identify ─► map to a fact ─► resolve tenant ─► publish

A gateway event type we do not apply is acknowledged and recorded as `ignored`; a redelivery of the
same gateway event (its event id) is acknowledged as a duplicate and applies nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import structlog
from pydantic import SecretStr, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from events.envelope import Envelope, envelope_for
from events.ids import InvalidId, validate_id
from events.payments import Gateway, GatewayEventIgnored, GatewayEvidence, PaymentFact, gateway_dedupe_key
from ingress.pipeline import Accept, IngressContext, IngressError, SignatureRefused, correlate, validation_problems
from ingress.signatures import SignatureError
from store import Database

log = structlog.get_logger("studiovault.ingress")

# The inbox needs an org for every event; a gateway event we cannot attribute (ignored types, an unknown
# invoice with no tenant notes) is filed under this placeholder. It owns no rows, so nothing attributed
# to it can ever pass a handler's tenant check.
UNATTRIBUTED_ORG = "org_00000000-0000-7000-8000-000000000000"


@dataclass(frozen=True)
class Fact:
    """A gateway event mapped to one of our payment facts; the invoice may still need resolving."""

    cls: type[PaymentFact]
    fields: dict[str, Any]
    invoice_id: str | None  # None: find it from the payment id in the ledger (Stripe refunds/disputes)
    tenant_notes: Mapping[str, Any] = field(default_factory=dict)  # org_id/branch_id the app put in notes


@dataclass(frozen=True)
class Ignore:
    reason: str


@dataclass(frozen=True)
class Delivery:
    """A verified, parsed delivery: who sent it, what it is."""

    gateway: Gateway
    event_id: str
    event_type: str
    doc: dict[str, Any]
    evidence: GatewayEvidence


# ---- parsing -------------------------------------------------------------------------------------------

def parse_json(body: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise IngressError(400, "invalid_json", f"the body is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise IngressError(400, "invalid_json", "the body must be a JSON object")
    return doc


EVENT_TYPE = re.compile(r"^[a-z_]+(\.[a-z_]+)+$")


def event_type_of(doc: Mapping[str, Any], key: str, gateway: str) -> str:
    """The delivery's event type (dotted lower-case words, as both gateways name them), or 422."""
    event_type = doc.get(key)
    if not isinstance(event_type, str) or not EVENT_TYPE.match(event_type):
        raise IngressError(422, "unknown_event_type", f"'{key}' must be a {gateway} event type, got {event_type!r}",
                           field=key)
    return event_type


def pick(doc: Mapping[str, Any], path: str, typ: type | tuple[type, ...], required: bool = True) -> Any:
    """`doc["a"]["b"]` for path "a.b", checked against `typ`; a clear 422 naming the field otherwise."""
    node: Any = doc
    for part in path.split("."):
        node = node.get(part) if isinstance(node, Mapping) else None
        if node is None:
            if required:
                raise IngressError(422, "missing_field", f"required field {path} is missing", field=path)
            return None
    if (isinstance(node, bool) and typ is int) or not isinstance(node, typ):
        raise IngressError(422, "invalid_field", f"field {path} has the wrong type", field=path)
    return node


def notes_of(doc: Mapping[str, Any], path: str) -> dict[str, Any]:
    """Razorpay notes / Stripe metadata; Razorpay sends `[]` for empty notes."""
    node = pick(doc, path, (dict, list), required=False)
    return node if isinstance(node, dict) else {}


def evidence_for(request: Request, body: bytes, *, event_id: str, event_type: str, headers: tuple[str, ...],
                 received_at: datetime) -> GatewayEvidence:
    kept = {h: request.headers[h][:500] for h in (*headers, "user-agent", "content-type") if h in request.headers}
    return GatewayEvidence(gateway_event_id=event_id, gateway_event_type=event_type,
                           body_sha256=hashlib.sha256(body).hexdigest(), headers=kept, received_at=received_at)


# ---- from a mapped event to an envelope ----------------------------------------------------------------

async def _locate(db: Database, delivery: Delivery, fact: Fact) -> tuple[str, str | None, str | None]:
    """(invoice id, its org, its branch); org/branch None when the invoice does not exist."""
    if fact.invoice_id is not None:
        rows = await db.query("SELECT i.branch_id, b.org_id FROM invoices i JOIN branches b ON b.id = i.branch_id"
                              " WHERE i.id = ?", (fact.invoice_id,))
        return fact.invoice_id, (rows[0]["org_id"] if rows else None), (rows[0]["branch_id"] if rows else None)
    payment_id = str(fact.fields["payment_id"])
    rows = await db.query(
        "SELECT g.invoice_id, i.branch_id, b.org_id FROM gateway_objects g JOIN invoices i ON i.id = g.invoice_id"
        " JOIN branches b ON b.id = i.branch_id WHERE g.gateway = ? AND g.payment_id = ? LIMIT 1",
        (delivery.gateway, payment_id))
    if not rows:
        raise IngressError(503, "payment_not_yet_known",
                           f"{delivery.event_type} names payment {payment_id} and no invoice, and that payment has not"
                           " been recorded yet; retry later", retry_after=60)
    return str(rows[0]["invoice_id"]), str(rows[0]["org_id"]), str(rows[0]["branch_id"])


def _tenant_from_notes(notes: Mapping[str, Any]) -> tuple[str | None, str | None]:
    org, branch = notes.get("org_id"), notes.get("branch_id")
    try:
        return (validate_id(org, "org") if isinstance(org, str) else None,
                validate_id(branch, "brn") if isinstance(branch, str) else None)
    except InvalidId as exc:
        raise IngressError(422, "invalid_field", f"tenant notes: {exc}", field="notes") from exc


async def fact_envelope(db: Database, delivery: Delivery, fact: Fact) -> Envelope:
    if fact.invoice_id is not None:
        try:
            validate_id(fact.invoice_id, "inv")
        except InvalidId as exc:
            raise IngressError(422, "invalid_field", f"invoice_id: {exc}", field="invoice_id") from exc
    invoice_id, org_id, branch_id = await _locate(db, delivery, fact)
    noted_org, noted_branch = _tenant_from_notes(fact.tenant_notes)
    if noted_org:  # the app's own claim; the handler checks it against the invoice
        org_id, branch_id = noted_org, noted_branch
    try:
        event = fact.cls(gateway=delivery.gateway, invoice_id=invoice_id, evidence=delivery.evidence, **fact.fields)
    except ValidationError as exc:
        raise IngressError(422, "invalid_field", f"{delivery.event_type}: {validation_problems(exc)}") from exc
    return envelope_for(event, org_id=org_id or UNATTRIBUTED_ORG, branch_id=branch_id,
                        dedupe_key=gateway_dedupe_key(delivery.gateway, delivery.event_id),
                        occurred_at=delivery.evidence.received_at, correlation_id=delivery.event_id,
                        received_at=delivery.evidence.received_at)


def ignored_envelope(delivery: Delivery, reason: str) -> Envelope:
    event = GatewayEventIgnored(gateway=delivery.gateway, reason=reason, evidence=delivery.evidence)
    return envelope_for(event, org_id=UNATTRIBUTED_ORG, branch_id=None,
                        dedupe_key=gateway_dedupe_key(delivery.gateway, delivery.event_id),
                        occurred_at=delivery.evidence.received_at, correlation_id=delivery.event_id,
                        received_at=delivery.evidence.received_at)


# ---- the endpoint ----------------------------------------------------------------------------------------

Receive = Callable[[Request, IngressContext, bytes, datetime], Delivery]
Mapper = Callable[[Delivery], Fact | Ignore]


def accept_with(gateway: Gateway, receive: Receive, mapper: Mapper) -> Accept:
    """A gateway endpoint's work: `receive` verifies and identifies, `mapper` maps, then one inbox write."""

    async def accept(request: Request, body: bytes, received_at: datetime, ctx: IngressContext) -> Response:
        try:
            delivery = receive(request, ctx, body, received_at)
        except SignatureError as exc:
            status = 400 if exc.code in {"missing_signature", "malformed_signature"} else 401
            raise SignatureRefused(status, exc.code, str(exc)) from exc
        correlate(delivery.event_id)  # the gateway's event id: the delivery's id from end to end
        mapped = mapper(delivery)
        if isinstance(mapped, Ignore):
            published = await ctx.publish(ignored_envelope(delivery, mapped.reason), status="ignored",
                                          note=mapped.reason)
        else:
            published = await ctx.publish(await fact_envelope(ctx.db, delivery, mapped))
        outcome = "duplicate" if published.duplicate else ("ignored" if isinstance(mapped, Ignore) else "accepted")
        log.info("webhook_accepted", source=gateway, gateway_event_id=delivery.event_id,
                 gateway_event_type=delivery.event_type, event_id=published.event_id, outcome=outcome)
        return JSONResponse({"status": outcome, "event_id": published.event_id})

    return accept


def secrets(values: list[SecretStr]) -> list[str]:
    """The configured secrets (blank ones were dropped by the settings), or 503: nothing can verify."""
    found = [v.get_secret_value() for v in values]
    if not found:
        raise IngressError(503, "not_configured", "no webhook secret is configured for this gateway")
    return found
