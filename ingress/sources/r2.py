"""`POST /webhooks/r2`: R2 event notifications, forwarded one message at a time by `r2-relay/`.

    relay ─► verify Standard Webhooks signature (secret list, tolerance) ─► parse R2's message
          ─► parse the object key (`events.media_keys`) ─► publish MediaUploaded / MediaDeleted ─► 202

Answers: 202 accepted (or a duplicate of an accepted one), 400 not an R2 message, 401 signature,
413 too large, 422 the message is valid but cannot be a media object (key layout, bucket, action),
503 not recorded (the relay retries). Nothing is written unless the answer is 202. Whether the
project exists and belongs to the key's branch and org is the handler's check: such an event is
dead-lettered with the reason, and can be replayed once the project has synced.

Which buckets and accounts are accepted: `SV_R2_BUCKETS`, `SV_R2_ACCOUNTS` (empty: any).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from functools import lru_cache
from typing import Any

import structlog
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from config import IngressSettings
from events.envelope import envelope_for
from events.media import MediaDeleted, MediaUploaded
from events.media_keys import KeyLayoutError, parse_key
from ingress.pipeline import IngressContext, IngressError, SignatureRefused, correlate, endpoint
from ingress.standard_webhooks import WebhookVerificationError, decode_secret, verify

log = structlog.get_logger("studiovault.ingress")
CREATE_ACTIONS = ("PutObject", "CopyObject", "CompleteMultipartUpload")
DELETE_ACTIONS = ("DeleteObject", "LifecycleDeletion")


class R2Object(BaseModel):
    model_config = ConfigDict(extra="ignore")
    key: str = Field(min_length=1)
    size: int | None = Field(default=None, ge=0)
    eTag: str | None = None  # noqa: N815 - R2's field name


class R2Notification(BaseModel):
    """One R2 event notification as R2 puts it on the queue (fields R2 may add later are ignored)."""

    model_config = ConfigDict(extra="ignore")
    account: str
    action: str
    bucket: str
    object: R2Object
    eventTime: AwareDatetime  # noqa: N815 - R2's field name


@lru_cache(maxsize=8)
def _keys(secrets: tuple[str, ...]) -> tuple[bytes, ...]:
    return tuple(decode_secret(s) for s in secrets)


def dedupe_key(note: R2Notification) -> str:
    """The same R2 notification (redelivered by the queue or the relay) → the same key."""
    natural = [note.bucket, note.object.key, note.action, note.object.eTag or "", note.eventTime.isoformat()]
    return "r2:" + hashlib.sha256(json.dumps(natural).encode()).hexdigest()


def to_event(note: R2Notification, r2: IngressSettings) -> MediaUploaded | MediaDeleted:
    """The media event for a notification, or `IngressError` (422) saying why it cannot be one."""
    if r2.r2_accounts and note.account not in r2.r2_accounts:
        raise IngressError(422, "unknown_account", f"account {note.account!r} is not accepted")
    if r2.r2_buckets and note.bucket not in r2.r2_buckets:
        raise IngressError(422, "unknown_bucket", f"bucket {note.bucket!r} is not accepted")
    try:
        parts = parse_key(note.object.key)
    except KeyLayoutError as exc:
        raise IngressError(422, "bad_key", str(exc)) from exc
    common: dict[str, Any] = {
        "org_id": parts.org_id, "branch_id": parts.branch_id, "project_id": parts.project_id,
        "bucket": note.bucket, "key": note.object.key, "file_type": parts.file_type, "action": note.action,
        "event_time": note.eventTime,
    }
    if note.action in DELETE_ACTIONS:
        return MediaDeleted(**common)
    if note.action not in CREATE_ACTIONS:
        raise IngressError(422, "unknown_action", f"action {note.action!r} is not an object create or delete")
    if note.object.size is None or not note.object.eTag:
        raise IngressError(422, "incomplete_object", f"{note.action} without object size and eTag")
    return MediaUploaded(**common, size_bytes=note.object.size, etag=note.object.eTag)


async def accept(request: Request, body: bytes, received_at: datetime, ctx: IngressContext) -> Response:
    config = ctx.config
    secrets = tuple(s.get_secret_value() for s in config.standard_webhook_secrets)
    try:
        verify(body, request.headers, _keys(secrets), received_at.timestamp(), config.standard_webhook_tolerance_s)
    except WebhookVerificationError as exc:
        raise SignatureRefused(401, "bad_signature", str(exc)) from exc
    message_id = request.headers.get("webhook-id", "")  # the relay's id for the R2 queue message (signed)
    if message_id:
        correlate(message_id)
    try:
        note = R2Notification.model_validate_json(body)
    except ValidationError as exc:
        raise IngressError(400, "bad_message", f"not an R2 event notification: {exc.error_count()} problems") from exc
    event = to_event(note, config)
    envelope = envelope_for(event, org_id=event.org_id, branch_id=event.branch_id, dedupe_key=dedupe_key(note),
                            occurred_at=note.eventTime, correlation_id=message_id[:255] or None,
                            received_at=received_at)
    published = await ctx.publish(envelope)
    log.info("webhook_accepted", source="r2", event_id=published.event_id, duplicate=published.duplicate,
             type=envelope.type, org_id=envelope.org_id, branch_id=envelope.branch_id)
    return JSONResponse({"event_id": published.event_id, "duplicate": published.duplicate}, status_code=202)


routes = [Route("/webhooks/r2", endpoint("r2", accept), methods=["POST"])]
