"""`POST /events` and `GET /events/{event_id}`: the producer API, for producers that cannot write to D1
(the desktop sync service, other tools). `GET /openapi.json` serves its contract.

    verify Standard Webhooks signature (the secret that verifies names the producer) ─► parse ─► type
    known (422) and allowed (403) ─► payload valid (422 + field) ─► dedupe key: new → inbox write, enqueue
    → 202 · same event again → 200 with its id and status · another payload or producer → 409

Nothing is written unless the answer is 202. Dedupe keys are global (one key, one event, whoever
wrote it); a producer replays and reads only its own events: a key or id recorded by another producer
is a 409 or 404, without saying whose. Answers are documented in `ingress.producer_api`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any

import structlog
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.clock import from_ms
from events import inbox
from events.catalog import EXTERNALLY_PUBLISHABLE, REGISTRY
from events.envelope import Envelope, Event, envelope_for
from events.ids import InvalidId, validate_id
from events.media import MediaDeleted, MediaUploaded
from events.media_keys import KeyLayoutError, parse_key
from ingress.pipeline import IngressContext, IngressError, SignatureRefused, endpoint
from ingress.producer_api import Accepted, EventStatus, PublishRequest, openapi_document
from ingress.standard_webhooks import WebhookVerificationError, decode_secret, verify
from store import ConstraintViolation

log = structlog.get_logger("studiovault.ingress")
NO_MATCH = "no matching signature found"


@lru_cache(maxsize=8)
def _keys(producers: tuple[tuple[str, tuple[str, ...]], ...]) -> dict[str, tuple[bytes, ...]]:
    return {name: tuple(decode_secret(s) for s in secrets) for name, secrets in producers}


def authenticate(request: Request, body: bytes, received_at: datetime, ctx: IngressContext) -> str:
    """The producer whose secret signed this request, or 401."""
    config = ctx.config
    producers = _keys(tuple((n, tuple(s.get_secret_value() for s in secrets))
                            for n, secrets in sorted(config.producer_secrets.items())))
    if not any(producers.values()):
        raise SignatureRefused(401, "bad_signature", "no producer is configured (SV_PRODUCER_SECRETS)")
    for name, keys in producers.items():
        try:
            verify(body, request.headers, keys, received_at.timestamp(), config.standard_webhook_tolerance_s)
        except WebhookVerificationError as exc:
            if str(exc) == NO_MATCH:
                continue
            raise SignatureRefused(401, "bad_signature", str(exc)) from exc
        return name
    raise SignatureRefused(401, "bad_signature", NO_MATCH)


def _field(loc: tuple[int | str, ...], prefix: str = "") -> str:
    return ".".join(str(p) for p in (prefix, *loc) if p != "") or "body"


def _invalid(exc: ValidationError, prefix: str = "") -> IngressError:
    first = exc.errors()[0]
    problems = "; ".join(f"{_field(e['loc'], prefix)}: {e['msg']}" for e in exc.errors())
    return IngressError(422, "invalid_field", problems[:1000], field=_field(first["loc"], prefix))


def parse_request(body: bytes) -> tuple[PublishRequest, Event]:
    """The request and its typed payload; or the documented 400/403/422."""
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise IngressError(400, "invalid_json", "the body is not JSON") from exc
    if not isinstance(document, dict):
        raise IngressError(400, "invalid_json", "the body must be a JSON object")
    event_type = document.get("type")
    versions = REGISTRY.versions(event_type) if isinstance(event_type, str) else []
    if not versions:
        raise IngressError(422, "unknown_event_type", f"unknown event type {event_type!r}", field="type")
    if event_type not in EXTERNALLY_PUBLISHABLE:
        raise IngressError(403, "type_not_allowed", f"{event_type} is published by the pipeline itself; external "
                           f"producers may publish {', '.join(sorted(EXTERNALLY_PUBLISHABLE))}", field="type")
    try:
        request = PublishRequest.model_validate(document)
    except ValidationError as exc:
        raise _invalid(exc) from exc
    version = request.schema_version or versions[-1]
    cls = REGISTRY.get(request.type, version)
    if cls is None:
        raise IngressError(422, "unknown_schema_version", f"{request.type} has no schema version {version}; "
                           f"known: {versions}", field="schema_version")
    try:
        event = cls.model_validate(request.payload)
    except ValidationError as exc:
        raise _invalid(exc, "payload") from exc
    _check_tenant(request, event)
    return request, event


def _check_tenant(request: PublishRequest, event: Event) -> None:
    """A payload that names a tenant (media events) names the request's; a media key fits its layout."""
    if not isinstance(event, MediaUploaded | MediaDeleted):
        return
    for name, value, expected in (("org_id", event.org_id, request.org_id),
                                  ("branch_id", event.branch_id, request.branch_id)):
        if value != expected:
            raise IngressError(422, "tenant_mismatch", f"payload.{name} {value} is not the event's {name} "
                               f"{expected}", field=f"payload.{name}")
    try:
        parts = parse_key(event.key)
    except KeyLayoutError as exc:
        raise IngressError(422, "bad_key", str(exc), field="payload.key") from exc
    if (parts.org_id, parts.branch_id, parts.project_id, parts.file_type) != (
            event.org_id, event.branch_id, event.project_id, event.file_type):
        raise IngressError(422, "bad_key", "the key's org, branch, project or file type is not the payload's",
                           field="payload.key")


def _same_event(row: Mapping[str, Any], producer: str, request: PublishRequest, envelope: Envelope) -> bool:
    stored = Envelope.model_validate_json(str(row["payload_json"]))
    cls = REGISTRY.get(stored.type, stored.schema_version)
    try:
        payload = cls.model_validate(stored.payload).model_dump(mode="json") if cls else stored.payload
    except ValidationError:
        payload = stored.payload
    return (row["producer"] == producer
            and (stored.type, stored.schema_version, stored.org_id, stored.branch_id, payload)
            == (envelope.type, envelope.schema_version, envelope.org_id, envelope.branch_id, envelope.payload)
            and (request.event_id is None or request.event_id == stored.event_id))


async def _replay(ctx: IngressContext, producer: str, request: PublishRequest, envelope: Envelope) -> Response:
    rows = await ctx.db.query("SELECT id, status, producer, payload_json FROM event_inbox WHERE dedupe_key = ?",
                              (envelope.dedupe_key,))
    if not rows:  # gone between the insert and this read: cannot happen (inbox rows are never deleted)
        raise IngressError(503, "unavailable", "the event is being recorded; retry", retry_after=1)
    row = rows[0]
    if not _same_event(row, producer, request, envelope):
        raise IngressError(409, "dedupe_key_conflict", "this dedupe key is recorded with another event; a new fact "
                           "needs a new key", field="dedupe_key")
    answer = Accepted(event_id=str(row["id"]), status=row["status"], duplicate=True)
    return JSONResponse(answer.model_dump(mode="json"), status_code=200)


async def accept(request: Request, body: bytes, received_at: datetime, ctx: IngressContext) -> Response:
    producer = authenticate(request, body, received_at, ctx)
    publish, event = parse_request(body)
    envelope = envelope_for(event, org_id=publish.org_id, branch_id=publish.branch_id, dedupe_key=publish.dedupe_key,
                            occurred_at=publish.occurred_at or received_at, available_at=publish.available_at,
                            event_id=publish.event_id)
    if await inbox.by_dedupe_key(ctx.db, envelope.dedupe_key):
        return await _replay(ctx, producer, publish, envelope)
    try:
        published = await ctx.publish(envelope, producer=producer)
    except ConstraintViolation as exc:
        raise IngressError(409, "event_id_conflict", "this event_id is recorded under another dedupe key",
                           field="event_id") from exc
    if published.duplicate:  # a concurrent request with the same key won the insert
        return await _replay(ctx, producer, publish, envelope)
    log.info("event_published", source="producer", producer=producer, event_id=envelope.event_id,
             type=envelope.type, org_id=envelope.org_id, branch_id=envelope.branch_id)
    answer = Accepted(event_id=published.event_id, status="pending", duplicate=False)
    return JSONResponse(answer.model_dump(mode="json"), status_code=202)


async def status(request: Request, body: bytes, received_at: datetime, ctx: IngressContext) -> Response:
    producer = authenticate(request, body, received_at, ctx)
    event_id = request.path_params["event_id"]
    try:
        validate_id(event_id, "evt")
    except InvalidId:
        row = None
    else:
        row = await inbox.get(ctx.db, event_id)
    if row is None or row["producer"] != producer:
        raise IngressError(404, "not_found", "no event with this id was published by this producer")
    answer = EventStatus(
        event_id=row["id"], type=row["type"], schema_version=row["schema_version"], org_id=row["org_id"],
        branch_id=row["branch_id"], dedupe_key=row["dedupe_key"], status=row["status"], attempts=row["attempts"],
        occurred_at=from_ms(int(row["occurred_at"])), created_at=from_ms(int(row["created_at"])),
        applied_at=from_ms(int(row["applied_at"])) if row["applied_at"] is not None else None,
        last_error=row["last_error"])
    return JSONResponse(answer.model_dump(mode="json"))


async def openapi(_: Request) -> Response:
    """The producer API's OpenAPI document (unauthenticated: it is the contract)."""
    return JSONResponse(openapi_document())


routes = [
    Route("/events", endpoint("producer", accept), methods=["POST"]),
    Route("/events/{event_id}", endpoint("producer", status), methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
]
