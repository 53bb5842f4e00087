"""The envelope every event travels in, and the base class of event payloads.

Events are immutable past-tense facts. A producer wraps a payload (a frozen `Event` model, e.g.
`PaymentCaptured`) in an `Envelope` naming the event, its tenant and its dedupe key; the envelope is
what the inbox stores and what a queue job carries, as JSON (never pickle).

One id from end to end: `correlation_id` names the outside fact an event's whole family stems from
(the gateway's event id, the R2 message id, a producer's own id) and `causation_id` the parent event
of a follow-up; `trace_context` carries the W3C trace context (`traceparent`) so a follow-up's span
continues its parent's trace. `received_at` is when the pipeline accepted the event (the ingress got
the webhook, or it was published): end-to-end latency counts from there. All four are optional, so
envelopes written before they existed still parse.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from events.ids import BranchId, EventId, OrgId, new_id


class Event(BaseModel):
    """Base of every event payload: frozen, and unknown fields are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1

    def lock_key(self) -> str | None:
        """The row this event read-modify-writes (e.g. its invoice). Events with the same key are applied
        one at a time within a worker process, so they do not conflict with each other; across
        processes the version check catches what is left. None: no ordering needed."""
        return None


class Envelope(BaseModel):
    """One event as published: identity, type, tenant, dedupe key and payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: EventId
    type: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
    schema_version: int = Field(ge=1)
    occurred_at: AwareDatetime
    org_id: OrgId
    branch_id: BranchId | None = None
    dedupe_key: str = Field(min_length=1, max_length=255)
    payload: dict[str, Any]
    # Not before this time (quiet hours, scheduled sends). None: as soon as possible.
    available_at: AwareDatetime | None = None
    # Observability (see the module docstring); stamped by the publisher and the unit of work.
    correlation_id: str | None = Field(None, min_length=1, max_length=255)
    causation_id: EventId | None = None
    trace_context: dict[str, str] | None = None
    received_at: AwareDatetime | None = None


def envelope_for(
    event: Event,
    *,
    org_id: str,
    branch_id: str | None,
    dedupe_key: str,
    occurred_at: datetime | None = None,
    available_at: datetime | None = None,
    event_id: str | None = None,
    correlation_id: str | None = None,
    received_at: datetime | None = None,
) -> Envelope:
    """Wrap `event` for publishing. The dedupe key is the producer's: the same fact, the same key.
    `correlation_id`: the outside id this event stems from (None: the publisher makes it the event id)."""
    return Envelope(
        event_id=event_id or new_id("evt"),
        type=event.event_type,
        schema_version=event.schema_version,
        occurred_at=occurred_at or datetime.now(UTC),
        org_id=org_id,
        branch_id=branch_id,
        dedupe_key=dedupe_key,
        payload=event.model_dump(mode="json"),
        available_at=available_at,
        correlation_id=correlation_id,
        received_at=received_at,
    )


def follow_up_of(parent: Envelope, child: Envelope, *, now: datetime,
                 trace_context: dict[str, str] | None = None) -> Envelope:
    """`child`, published by the unit of work that applies `parent`: caused by it, in its correlation
    (the parent's, or the parent itself for a root event), in its trace (`trace_context`: the applying
    span's; else the parent's), received `now`. What the handler set explicitly is kept."""
    return child.model_copy(update={
        "causation_id": child.causation_id or parent.event_id,
        "correlation_id": child.correlation_id or parent.correlation_id or parent.event_id,
        "trace_context": child.trace_context or trace_context or parent.trace_context,
        "received_at": child.received_at or now,
    })
