"""`POST /webhooks/r2`: R2 event notifications, forwarded one message at a time by `r2-relay/`.

    relay ─► verify Standard Webhooks signature (secret list, tolerance) ─► parse R2's message
          ─► parse the object key (`handlers.media_keys`) ─► publish MediaUploaded / MediaDeleted ─► 202

Answers: 202 accepted (or a duplicate of an accepted one), 400 not an R2 message, 401 signature,
413 too large, 422 the message is valid but cannot be a media object (key layout, bucket, action),
503 not recorded (the relay retries). Nothing is written unless the answer is 202. Whether the
project exists and belongs to the key's branch and org is the handler's check: such an event is
dead-lettered with the reason, and can be replayed once the project has synced.

The route reads `request.app.state.ingress` (`ingress.common.IngressState`: its `publisher`, `clock`,
and its `settings`' `standard_webhook_secrets`, `standard_webhook_tolerance_s`, `max_body_bytes`), and
optionally `request.app.state.r2_settings` (`R2Settings`; by default from `SV_R2_*`).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any

import structlog
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from events.envelope import envelope_for
from events.media import MediaDeleted, MediaUploaded
from handlers.media_keys import KeyLayoutError, parse_key
from ingress.common import IngressState
from ingress.standard_webhooks import WebhookVerificationError, decode_secret, verify

log = structlog.get_logger("studiovault.ingress.r2")
CREATE_ACTIONS = ("PutObject", "CopyObject", "CompleteMultipartUpload")
DELETE_ACTIONS = ("DeleteObject", "LifecycleDeletion")


class R2Settings(BaseSettings):
    """Which R2 notifications this deployment accepts (empty list: any)."""

    model_config = SettingsConfigDict(env_prefix="SV_R2_", env_file=".env", extra="ignore")

    buckets: list[str] = Field(default_factory=list)
    accounts: list[str] = Field(default_factory=list)


@lru_cache(maxsize=1)
def get_r2_settings() -> R2Settings:
    return R2Settings()


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


class Refused(Exception):
    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


@lru_cache(maxsize=8)
def _keys(secrets: tuple[str, ...]) -> tuple[bytes, ...]:
    return tuple(decode_secret(s) for s in secrets)


def dedupe_key(note: R2Notification) -> str:
    """The same R2 notification (redelivered by the queue or the relay) → the same key."""
    natural = [note.bucket, note.object.key, note.action, note.object.eTag or "", note.eventTime.isoformat()]
    return "r2:" + hashlib.sha256(json.dumps(natural).encode()).hexdigest()


def to_event(note: R2Notification, r2: R2Settings) -> MediaUploaded | MediaDeleted:
    """The media event for a notification, or `Refused` (422) saying why it cannot be one."""
    if r2.accounts and note.account not in r2.accounts:
        raise Refused(422, "unknown_account", f"account {note.account!r} is not accepted")
    if r2.buckets and note.bucket not in r2.buckets:
        raise Refused(422, "unknown_bucket", f"bucket {note.bucket!r} is not accepted")
    try:
        parts = parse_key(note.object.key)
    except KeyLayoutError as exc:
        raise Refused(422, "bad_key", str(exc)) from exc
    common: dict[str, Any] = {
        "org_id": parts.org_id, "branch_id": parts.branch_id, "project_id": parts.project_id,
        "bucket": note.bucket, "key": note.object.key, "file_type": parts.file_type, "action": note.action,
        "event_time": note.eventTime,
    }
    if note.action in DELETE_ACTIONS:
        return MediaDeleted(**common)
    if note.action not in CREATE_ACTIONS:
        raise Refused(422, "unknown_action", f"action {note.action!r} is not an object create or delete")
    if note.object.size is None or not note.object.eTag:
        raise Refused(422, "incomplete_object", f"{note.action} without object size and eTag")
    return MediaUploaded(**common, size_bytes=note.object.size, etag=note.object.eTag)


async def receive_r2(request: Request) -> JSONResponse:
    state = request.app.state
    ingress: IngressState = state.ingress
    settings = ingress.settings
    try:
        body = await _read_body(request, settings.max_body_bytes)
        secrets = tuple(s.get_secret_value() for s in settings.standard_webhook_secrets)
        try:
            verify(body, request.headers, _keys(secrets), ingress.clock().timestamp(),
                   settings.standard_webhook_tolerance_s)
        except WebhookVerificationError as exc:
            raise Refused(401, "bad_signature", str(exc)) from exc
        try:
            note = R2Notification.model_validate_json(body)
        except ValidationError as exc:
            raise Refused(400, "bad_message", f"not an R2 event notification: {exc.error_count()} problems") from exc
        event = to_event(note, getattr(state, "r2_settings", None) or get_r2_settings())
    except Refused as refused:
        log.warning("r2_notification_refused", status=refused.status, error=refused.error, detail=refused.detail)
        return JSONResponse({"error": refused.error, "detail": refused.detail}, status_code=refused.status)
    envelope = envelope_for(event, org_id=event.org_id, branch_id=event.branch_id, dedupe_key=dedupe_key(note),
                            occurred_at=note.eventTime)
    try:
        published = await ingress.publisher.publish(envelope)
    except Exception as exc:  # not recorded, whatever the cause: the relay must retry
        log.exception("r2_notification_not_recorded", error=type(exc).__name__)
        return JSONResponse({"error": "not_recorded", "detail": "try again"}, status_code=503)
    log.info("r2_notification_accepted", event_id=published.event_id, duplicate=published.duplicate,
             type=envelope.type, org_id=envelope.org_id, branch_id=envelope.branch_id)
    return JSONResponse({"event_id": published.event_id, "duplicate": published.duplicate}, status_code=202)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Refused(413, "too_large", f"body over {limit} bytes")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Refused(413, "too_large", f"body over {limit} bytes")
    return body


routes = [Route("/webhooks/r2", receive_r2, methods=["POST"])]
