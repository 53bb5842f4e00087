"""The producer API's contract: its request and answer models, and its OpenAPI 3.1 document.

The document is built from the same pydantic models the ingress validates with (and, for the payloads,
the event models through `events.schema`), served at `GET /openapi.json` and kept in the repository as
`schemas/openapi.json` by `studiovault schema export` (a test checks the two are equal).
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from events.catalog import publishable_types
from events.envelope import Event
from events.ids import BranchId, EventId, OrgId
from events.schema import event_schema, model_schema

OPENAPI_FILE = "openapi.json"
API_VERSION = "1.0.0"
InboxStatus = Literal["pending", "applied", "dead", "ignored"]


class PublishRequest(BaseModel):
    """One event, as a producer posts it to `POST /events`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: str = Field(description="The event type; only the types external producers may publish.")
    schema_version: int | None = Field(None, ge=1, description="The payload's schema version; default: the "
                                       "type's only (current) version.")
    event_id: EventId | None = Field(None, description="evt_<uuidv7> when the producer made it already (e.g. "
                                     "offline): accepted as given, however old. Default: a new one.")
    org_id: OrgId
    branch_id: BranchId
    dedupe_key: str = Field(min_length=1, max_length=255, description="The producer's key for the fact: the "
                            "same fact, the same key. A replay with the same key and payload is answered 200 "
                            "with the first event; another payload under the key is a 409.")
    occurred_at: AwareDatetime | None = Field(None, description="When it happened (default: when received).")
    available_at: AwareDatetime | None = Field(None, description="Not to be applied before (default: now).")
    payload: dict[str, Any] = Field(description="The event's fields, validated against its JSON Schema.")


class Accepted(BaseModel):
    """The answer to `POST /events`: 202 for a new event, 200 for a replay of one already recorded."""

    event_id: EventId
    status: InboxStatus
    duplicate: bool = Field(description="true: this dedupe key was recorded before; nothing new was written.")


class EventStatus(BaseModel):
    """`GET /events/{event_id}`: where one of the producer's events is."""

    event_id: EventId
    type: str
    schema_version: int
    org_id: str
    branch_id: str | None
    dedupe_key: str
    status: InboxStatus
    attempts: int = Field(ge=0)
    occurred_at: AwareDatetime
    created_at: AwareDatetime
    applied_at: AwareDatetime | None
    last_error: str | None = Field(description="Why it was dead-lettered, or the last retried failure.")


class Problem(BaseModel):
    """Every refusal: a code, a human-readable detail, and for 422s the offending field's path."""

    model_config = ConfigDict(extra="allow")

    error: str
    detail: str
    field: str | None = Field(None, description="e.g. payload.project_id")


def _component(model: type[BaseModel]) -> dict[str, Any]:
    schema = model_schema(model)
    schema.pop("$defs", None)  # none of these models nests another
    return schema


def _payload_name(cls: type[Event]) -> str:
    return f"{cls.event_type}.v{cls.schema_version}"


def _request_variant(cls: type[Event], base: dict[str, Any]) -> dict[str, Any]:
    properties = dict(base["properties"])
    properties["type"] = {"const": cls.event_type, "type": "string"}
    properties["schema_version"] = {"const": cls.schema_version, "type": "integer"}
    properties["payload"] = {"$ref": f"#/components/schemas/{_payload_name(cls)}"}
    return {**base, "title": f"Publish {cls.event_type} v{cls.schema_version}", "properties": properties}


def _payload_component(cls: type[Event]) -> dict[str, Any]:
    schema = event_schema(cls)
    for key in ("$schema", "$id"):
        schema.pop(key, None)
    return schema


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def _ok(description: str, component: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{component}"}}}}


SIGNING = (
    "Every request is signed with Standard Webhooks (https://www.standardwebhooks.com): headers `webhook-id` "
    "(unique per request), `webhook-timestamp` (unix seconds, within 5 minutes of the server's clock) and "
    "`webhook-signature` (`v1,<base64 HMAC-SHA256>` of `{webhook-id}.{webhook-timestamp}.{body}` with the "
    "producer's `whsec_` secret; the body of a GET is empty). The secret that verifies names the producer "
    "(`SV_PRODUCER_SECRETS`); several secrets per producer during a rotation."
)


@cache
def openapi_document() -> dict[str, Any]:
    """The producer API's OpenAPI 3.1 document (JSON Schema 2020-12 inside)."""
    classes = publishable_types()
    base = _component(PublishRequest)
    variants = {f"Publish_{cls.event_type.replace('.', '_')}_v{cls.schema_version}": _request_variant(cls, base)
                for cls in classes}
    schemas: dict[str, Any] = {
        "PublishRequest": {
            "oneOf": [{"$ref": f"#/components/schemas/{name}"} for name in variants],
            "discriminator": {"propertyName": "type", "mapping": {
                cls.event_type: f"#/components/schemas/{name}" for cls, name in zip(classes, variants, strict=True)
                if cls.schema_version == max(c.schema_version for c in classes if c.event_type == cls.event_type)}},
        },
        **variants,
        **{_payload_name(cls): _payload_component(cls) for cls in classes},
        "Accepted": _component(Accepted),
        "EventStatus": _component(EventStatus),
        "Problem": _component(Problem),
    }
    publish_responses = {
        "200": _ok("A replay: this dedupe key is recorded with the same event; its id and current status.",
                   "Accepted"),
        "202": _ok("Recorded in the inbox (durably) and queued: its id, status pending.", "Accepted"),
        "400": _problem("The body is not a JSON object."),
        "401": _problem("Not signed, wrongly signed, or the timestamp is stale."),
        "403": _problem("This event type may not be published by external producers."),
        "409": _problem("The dedupe key is recorded with another payload, or by another producer; or the "
                        "event_id is recorded under another dedupe key."),
        "413": _problem("The body is larger than SV_MAX_BODY_BYTES."),
        "422": _problem("A field is invalid (`field` names it, e.g. payload.project_id), or the type or its "
                        "schema_version is unknown."),
        "503": _problem("Not recorded (the database is unavailable, or the deadline passed): retry later."),
    }
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "StudioVault producer API",
            "version": API_VERSION,
            "description": "Publish pipeline events from producers that cannot write to D1 (the desktop sync "
                           "service, other tools). " + SIGNING,
        },
        "paths": {
            "/events": {"post": {
                "operationId": "publishEvent",
                "summary": "Publish one event (idempotent on its dedupe key); answered after the inbox write.",
                "security": [{"standardWebhooks": []}],
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/PublishRequest"}}}},
                "responses": publish_responses,
            }},
            "/events/{event_id}": {"get": {
                "operationId": "getEvent",
                "summary": "The status of one of this producer's events (others' are 404).",
                "security": [{"standardWebhooks": []}],
                "parameters": [{"name": "event_id", "in": "path", "required": True,
                                "schema": {"type": "string", "maxLength": 64}}],
                "responses": {
                    "200": _ok("The event's status.", "EventStatus"),
                    "401": _problem("Not signed, wrongly signed, or the timestamp is stale."),
                    "404": _problem("No event with this id was published by this producer."),
                    "503": _problem("The database is unavailable: retry later."),
                },
            }},
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"standardWebhooks": {
                "type": "apiKey", "in": "header", "name": "webhook-signature", "description": SIGNING}},
        },
    }
