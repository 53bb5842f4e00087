"""The metric catalogue: every family the ingress and the workers serve, with its labels and buckets.

Each process owns one registry (`IngressMetrics` or `WorkerMetrics`, plus the process, platform and
GC collectors prometheus_client ships), so tests that run several workers in one process count
separately. Labels are low-cardinality by construction: a source, an HTTP code, an event type the
routing table knows (anything else is `other`), a channel, an outcome or an error kind; never an
event, invoice or org id. Labelled counters start at 0 for every known label value, so the first
dead letter or 503 is visible to `increase()`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from core.money import to_paise
from events.billing import BillingPeriodClosed
from events.notifications import NotificationDue, NotificationFallbackDue, NotificationStatusReported

OUTCOMES = ("applied", "duplicate", "retry", "deferred", "dead", "ignored")
SEND_OUTCOMES = ("sent", "retry", "failed", "unknown")
CHANNELS = ("whatsapp", "sms", "email")
# The events whose plans send or bill a notification (their logs name the channel and the cost).
NOTIFICATION_TYPES = frozenset({NotificationDue.event_type, NotificationFallbackDue.event_type,
                                NotificationStatusReported.event_type})
BILLING_OUTCOMES = ("invoiced", "nothing_to_bill", "already_closed", "dead")
DATABASE_ERRORS = ("transient", "conflict", "constraint", "query", "unavailable")
REDIS_ERRORS = ("unavailable", "timeout", "other")
# The codes an ingress endpoint answers on purpose (2xx accepted, refusals, 503 retry); others appear
# when they happen.
INGRESS_CODES = ("200", "202", "400", "401", "413", "422", "500", "503")
OTHER_TYPE = "other"

# 2 and 4 s are edges: the ingress answers 503 at SV_INGRESS_DEADLINE_S (4 s), inside Razorpay's 5 s.
INGRESS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
BODY_BYTES = (256, 1024, 4096, 16384, 65536, 262144, 1048576)
APPLY_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# 1, 60 and 300 s are edges the end-to-end alerts use; retries back off up to 15 min, quiet hours 12 h.
END_TO_END_SECONDS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0,
                      3600.0, 14400.0, 43200.0)


def new_registry() -> CollectorRegistry:
    """A registry with the process's CPU, memory, file descriptors, Python version and GC. The
    `*_created` series prometheus_client adds to every counter and histogram are turned off (process
    wide): they double the text and no rule uses them."""
    disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class ErrorSink(Protocol):
    """Where the database and Redis instruments count errors by kind."""

    def database_error(self, kind: str) -> None: ...

    def redis_error(self, kind: str) -> None: ...


class _Errors:
    """Database and Redis errors by kind: counted by the ingress and by every worker."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.database_errors = Counter(
            "studiovault_database_errors", "Database calls that failed, by kind (a version conflict is 'conflict').",
            ["kind"], registry=registry)
        self.redis_errors = Counter(
            "studiovault_redis_errors", "Redis calls that failed, by kind (polls, enqueues, rate limits, snapshots).",
            ["kind"], registry=registry)
        for kind in DATABASE_ERRORS:
            self.database_errors.labels(kind)
        for kind in REDIS_ERRORS:
            self.redis_errors.labels(kind)

    def database_error(self, kind: str) -> None:
        self.database_errors.labels(kind).inc()

    def redis_error(self, kind: str) -> None:
        self.redis_errors.labels(kind).inc()

    def exposition(self) -> bytes:
        """The registry as Prometheus text (format 0.0.4)."""
        return generate_latest(self.registry)

    def negotiated(self, accept: str | None) -> tuple[bytes, str]:
        """The registry in the format the scraper's Accept header prefers (Prometheus asks for
        OpenMetrics, curl gets text 0.0.4): the body and its content type, as the worker's server does."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class IngressMetrics(_Errors):
    """What the ingress counts per webhook request, by the route's source name."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry or new_registry())
        r = self.registry
        self.requests = Counter("studiovault_ingress_requests", "Webhook requests answered, by source and HTTP code.",
                                ["source", "code"], registry=r)
        self.signature_failures = Counter(
            "studiovault_ingress_signature_failures", "Webhook requests refused for a missing, malformed or wrong"
            " signature.", ["source"], registry=r)
        self.body_bytes = Histogram("studiovault_ingress_request_body_bytes", "Webhook request body sizes.",
                                    ["source"], buckets=BODY_BYTES, registry=r)
        self.duration = Histogram("studiovault_ingress_request_duration_seconds",
                                  "Time from a webhook request's start to its answer.", ["source"],
                                  buckets=INGRESS_SECONDS, registry=r)
        self.publish_failures = Counter(
            "studiovault_ingress_publish_failures", "Webhooks whose inbox write failed (answered 503) or whose"
            " enqueue failed (accepted; the re-drive enqueues it).", ["source"], registry=r)

    def prime(self, sources: Iterable[str]) -> None:
        """Create every source's counters at 0."""
        for source in sources:
            for code in INGRESS_CODES:
                self.requests.labels(source, code)
            self.signature_failures.labels(source)
            self.publish_failures.labels(source)

    def request(self, source: str, code: int, seconds: float, body_bytes: int | None, *,
                signature_failed: bool, publish_failed: bool) -> None:
        self.requests.labels(source, str(code)).inc()
        self.duration.labels(source).observe(seconds)
        if body_bytes is not None:
            self.body_bytes.labels(source).observe(body_bytes)
        if signature_failed:
            self.signature_failures.labels(source).inc()
        if publish_failed:
            self.publish_failures.labels(source).inc()


class WorkerMetrics(_Errors):
    """What a worker counts: events by type and outcome, timings, sends, billing closes, errors."""

    def __init__(self, event_types: Iterable[str] = (), registry: CollectorRegistry | None = None) -> None:
        super().__init__(registry or new_registry())
        r = self.registry
        self.event_types = frozenset(event_types)
        self.events = Counter("studiovault_events", "Event deliveries handled by the worker, by type and outcome.",
                              ["type", "outcome"], registry=r)
        self.apply_duration = Histogram("studiovault_event_apply_duration_seconds",
                                        "Time one delivery of an event took to handle, whatever its outcome.",
                                        ["type"], buckets=APPLY_SECONDS, registry=r)
        self.end_to_end = Histogram(
            "studiovault_event_end_to_end_seconds", "From an event's receipt (the webhook received, or the event"
            " published; for a planned wait such as quiet hours, its end) to its batch committed.", ["type"],
            buckets=END_TO_END_SECONDS, registry=r)
        self.version_conflicts = Counter("studiovault_version_conflicts",
                                         "Batches aborted by a version check (the event is re-read and retried).",
                                         ["type"], registry=r)
        self.sends = Counter("studiovault_notification_sends", "Notification provider requests by outcome"
                             " ('unknown': a send cut short by a crash, recorded and not repeated).",
                             ["channel", "outcome"], registry=r)
        self.cost = Counter("studiovault_notification_cost_paise", "Rate-card cost of the notifications recorded,"
                            " in paise.", ["channel"], registry=r)
        self.billing_closes = Counter("studiovault_billing_closes", "Billing period closes applied, by outcome.",
                                      ["outcome"], registry=r)
        self.heartbeat = Gauge("studiovault_worker_heartbeat_timestamp_seconds",
                               "Unix time of this worker's last successful poll of Redis.", registry=r)
        for event_type in (*sorted(self.event_types), OTHER_TYPE):
            for outcome in OUTCOMES:
                self.events.labels(event_type, outcome)
            self.version_conflicts.labels(event_type)
        for channel in CHANNELS:
            self.cost.labels(channel)
            for outcome in SEND_OUTCOMES:
                self.sends.labels(channel, outcome)
        for outcome in BILLING_OUTCOMES:
            self.billing_closes.labels(outcome)

    def type_label(self, event_type: str) -> str:
        """The event type, when the routing table knows it; `other` otherwise (bounded cardinality)."""
        return event_type if event_type in self.event_types else OTHER_TYPE

    def outcome(self, event_type: str, outcome: str, seconds: float) -> None:
        """One delivery handled: its outcome and how long it took."""
        label = self.type_label(event_type)
        self.events.labels(label, outcome).inc()
        self.apply_duration.labels(label).observe(seconds)
        if outcome == "dead" and event_type == BillingPeriodClosed.event_type:
            self.billing_closes.labels("dead").inc()

    def conflict(self, event_type: str) -> None:
        self.version_conflicts.labels(self.type_label(event_type)).inc()

    def committed(self, event_type: str, plan_outcome: str, log: Mapping[str, Any], latency_s: float | None) -> None:
        """An event's batch committed: its end-to-end latency, and what its plan says was sent or billed."""
        if latency_s is not None:
            self.end_to_end.labels(self.type_label(event_type)).observe(max(latency_s, 0.0))
        if event_type in NOTIFICATION_TYPES and log.get("channel") in CHANNELS:
            # The cost that became billable: at the send when the channel bills on acceptance, or when a
            # delivery status makes it billable (SV_BILLABLE_ON).
            channel = str(log["channel"])
            billed = log.get("billed_cost", log.get("cost", 0))
            if billed:
                self.cost.labels(channel).inc(to_paise(billed))
            if log.get("unknown") is True:
                self.sends.labels(channel, "unknown").inc()
        elif event_type == BillingPeriodClosed.event_type and plan_outcome != "dead":
            outcome = ("already_closed" if log.get("already_closed") else
                       "invoiced" if log.get("invoice_id") else "nothing_to_bill")
            self.billing_closes.labels(outcome).inc()

    def sent(self, channel: str, outcome: str) -> None:
        self.sends.labels(channel, outcome).inc()

    def polled(self) -> None:
        self.heartbeat.set(time.time())
