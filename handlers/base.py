"""What a handler is: read, plan purely, return the statements and follow-ups for ONE batch.

A handler never commits. The worker's unit of work wraps its `Plan` with the inbox guard, the inbox
row marked applied and the follow-up events, and runs all of it as one atomic batch. What a handler
may use is in its `HandlerContext`: the envelope, the database (for reads), the clock's `now`, and the
typed `Services` the composition root built (notification senders behind the `providers.port` port).
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, Literal, Protocol

from events.envelope import Envelope, Event
from events.notifications import Channel
from events.registry import EventRegistry
from providers.port import RateLimiter, Sender
from store import Database, Statement


class Rejected(Exception):
    """A permanent problem with the event (unknown invoice, wrong tenant, bad data): dead-letter it."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class RetryLater(Exception):
    """A temporary problem (a provider's 429/5xx): retry with backoff, not before `after_s` seconds."""

    def __init__(self, reason: str, after_s: float = 0.0) -> None:
        super().__init__(reason)
        self.after_s = after_s


class Defer(Exception):
    """Not yet (quiet hours): run again at `until`. Not a failure; uses no retry budget."""

    def __init__(self, until: datetime, reason: str) -> None:
        super().__init__(reason)
        self.until = until


class SelfConflict(Rejected):
    """A plan's version assertion fails against the very rows it was planned from: no retry can succeed
    (the plan is wrong about the data, e.g. a rounding that disagrees with it), so dead-letter at once."""

    def __init__(self, detail: str) -> None:
        super().__init__("self_conflict", detail)


@dataclass(frozen=True)
class ReadSet:
    """The reads a plan was made from, and what they returned."""

    statements: Sequence[Statement]
    rows: Sequence[Sequence[Mapping[str, Any]]]


@dataclass(frozen=True)
class Plan:
    """The writes of one event's effect, to run as one batch with the inbox bookkeeping."""

    statements: Sequence[Statement] = ()
    follow_ups: Sequence[Envelope] = ()
    outcome: str = "applied"  # or "ignored": acknowledged, recorded, deliberately no effect
    log: Mapping[str, Any] = field(default_factory=dict)
    # For a plan whose assertions all test the state before the batch (billing): on a version conflict
    # the worker re-runs these reads and the assertions in one round trip. Same rows and a failing
    # assertion: a self-conflict (`SelfConflict`, dead-lettered at once); else a real concurrent change.
    read_set: ReadSet | None = None
    # The earliest the event could have been applied by design (e.g. the end of the quiet hours it
    # arrived in): its end-to-end latency counts from here rather than from its receipt. None: receipt.
    not_before: datetime | None = None


@dataclass(frozen=True)
class NotifyServices:
    """What notification dispatch sends with: one sender per configured channel, the per-branch cap."""

    senders: Mapping[Channel, Sender] = field(default_factory=dict)
    limiter: RateLimiter | None = None
    rate_per_minute: int = 60  # the default per-branch cap; a branch's config may change it
    # The rate card's billable moment per channel (SV_BILLABLE_ON): "accepted" or "delivered".
    billable_on: Mapping[str, Literal["accepted", "delivered"]] = field(default_factory=lambda: {
        "whatsapp": "delivered", "sms": "accepted", "email": "accepted"})
    status_unknown_grace_s: float = 300.0  # a status naming no recorded send is retried this long
    fallback_grace_s: float = 30.0  # a late failure's SMS fallback waits this long for a racing `delivered`
    # The worker's failure budget (SV_MAX_ATTEMPTS): a provider still answering "not now" on the last
    # attempt is a failure of that channel, so it falls back or is audited instead of dying silently.
    max_attempts: int = 20
    provider_retry_window_s: float = 24 * 3600.0  # SV_PROVIDER_RETRY_WINDOW_S


@dataclass(frozen=True)
class Services:
    """Everything beyond the database that handlers use, typed."""

    notify: NotifyServices | None = None


@dataclass(frozen=True)
class HandlerContext:
    """What a handler may use: the envelope, the database for reads, the clock, the services."""

    envelope: Envelope
    db: Database
    now: datetime
    attempt: int
    services: Services = field(default_factory=Services)


class Handler(Protocol):
    def __call__(self, event: Any, ctx: HandlerContext, /) -> Awaitable[Plan]: ...


@dataclass(frozen=True)
class Router:
    """One explicit routing table: event type → its one handler."""

    handlers: Mapping[type[Event], Handler]

    @cached_property
    def registry(self) -> EventRegistry:
        return EventRegistry(self.handlers)

    @cached_property
    def event_types(self) -> frozenset[str]:
        """The `type` of every event this table routes."""
        return frozenset(cls.event_type for cls in self.handlers)

    def handler_for(self, event: Event) -> Handler:
        return self.handlers[type(event)]
