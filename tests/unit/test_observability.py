"""The metric catalogue, the pure parts of the instruments, and the envelope's one id from end to end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis.exceptions

from events.envelope import Envelope, envelope_for, follow_up_of
from events.ids import new_id
from events.notifications import NotificationDue
from handlers.routes import ROUTER
from observability.instruments import database_error_kind, redis_error_kind
from observability.metrics import IngressMetrics, WorkerMetrics
from observability.state import PipelineState, Snapshot
from readmodels.inbox import DeadFilter
from store import (
    AlreadyApplied,
    ConstraintViolation,
    DatabaseUnavailable,
    ParameterLimitExceeded,
    QueryError,
    TransientError,
    VersionConflict,
)
from tests.support.metrics import INGRESS_CATALOGUE, STATE_CATALOGUE, WORKER_CATALOGUE, Scrape

ORG, BRANCH = new_id("org"), new_id("brn")


def worker_scrape(metrics: WorkerMetrics) -> Scrape:
    return Scrape(metrics.exposition().decode())


def test_the_worker_serves_exactly_the_catalogued_families_and_labels() -> None:
    metrics = WorkerMetrics(ROUTER.event_types)
    state = PipelineState()
    metrics.registry.register(state)
    state.latest = Snapshot(pending=3, dead=1, oldest_pending_age_s=12.5, queue_depth=4, computed_at=1.79e9)
    metrics.outcome("payment.captured", "applied", 0.004)
    metrics.committed("payment.captured", "applied", {}, 0.3)
    metrics.polled()
    families = worker_scrape(metrics).families()
    ours = {name: kind for name, kind in families.items() if name.startswith("studiovault_")}
    assert ours == WORKER_CATALOGUE | STATE_CATALOGUE
    assert "process_resident_memory_bytes" in families


def test_the_ingress_serves_exactly_the_catalogued_families_and_labels() -> None:
    metrics = IngressMetrics()
    metrics.prime(["razorpay"])
    metrics.request("razorpay", 200, 0.01, 900, signature_failed=False, publish_failed=False)
    families = Scrape(metrics.exposition().decode()).families()
    ours = {n: k for n, k in families.items() if n.startswith("studiovault_ingress")}
    assert ours == INGRESS_CATALOGUE
    assert {"studiovault_database_errors", "studiovault_redis_errors"} <= set(families)


def test_labelled_counters_start_at_zero_for_every_known_value_so_a_first_increment_is_visible() -> None:
    scrape = worker_scrape(WorkerMetrics(ROUTER.event_types))
    for outcome in ("applied", "duplicate", "retry", "deferred", "dead", "ignored"):
        assert f'studiovault_events_total{{outcome="{outcome}",type="payment.captured"}} 0.0' in scrape.text
    assert 'studiovault_notification_sends_total{channel="whatsapp",outcome="unknown"} 0.0' in scrape.text
    assert 'studiovault_billing_closes_total{outcome="dead"} 0.0' in scrape.text
    assert 'studiovault_database_errors_total{kind="unavailable"} 0.0' in scrape.text
    ingress = IngressMetrics()
    ingress.prime(["stripe"])
    assert 'studiovault_ingress_requests_total{code="503",source="stripe"} 0.0' in ingress.exposition().decode()


def test_an_event_type_the_routing_table_does_not_know_is_counted_as_other() -> None:
    metrics = WorkerMetrics(ROUTER.event_types)
    metrics.outcome("made.up_type", "dead", 0.001)
    metrics.outcome("", "dead", 0.001)  # an envelope that did not even parse
    scrape = worker_scrape(metrics)
    assert scrape.value("studiovault_events_total", type="other", outcome="dead") == 2
    assert "made.up_type" not in scrape.text


@pytest.mark.parametrize(("event_type", "outcome", "log", "closes", "cost", "unknown"), [
    ("billing.period_closed", "applied", {"invoice_id": "inv_x", "period": "2026-10"}, "invoiced", 0, 0),
    ("billing.period_closed", "applied", {"period": "2026-10", "subtotal": "0"}, "nothing_to_bill", 0, 0),
    ("billing.period_closed", "ignored", {"period": "2026-10", "already_closed": True}, "already_closed", 0, 0),
    ("notification.due", "applied", {"channel": "whatsapp", "cost": 0.35}, None, 35, 0),
    ("notification.due", "applied", {"channel": "sms", "cost": 0.25, "unknown": True}, None, 25, 1),
    ("notification.due", "ignored", {"reason": "already_recorded", "channel": "sms"}, None, 0, 0),
    ("notification.due", "dead", {"notification_id": "ntf_x", "error": "notification_failed"}, None, 0, 0),
    # WhatsApp billed on delivery: the send bills nothing, the `delivered` status makes the cost billable.
    ("notification.due", "applied", {"channel": "whatsapp", "cost": 0.0, "billable": "delivered"}, None, 0, 0),
    ("notification.status_reported", "applied", {"channel": "whatsapp", "charge": "billable", "billed_cost": 0.35},
     None, 35, 0),
    ("notification.status_reported", "applied", {"channel": "whatsapp", "change": "none"}, None, 0, 0),
    ("notification.fallback_due", "applied", {"channel": "sms", "cost": 0.25}, None, 25, 0),
])
def test_a_committed_plan_records_what_it_billed_and_sent(  # noqa: PLR0917 - one parameter per table column
    event_type: str, outcome: str, log: dict[str, Any], closes: str | None, cost: int, unknown: int,
) -> None:
    metrics = WorkerMetrics(ROUTER.event_types)
    metrics.committed(event_type, outcome, log, 0.5)
    scrape = worker_scrape(metrics)
    for name in ("invoiced", "nothing_to_bill", "already_closed", "dead"):
        assert scrape.value("studiovault_billing_closes_total", outcome=name) == (1 if name == closes else 0)
    channel = str(log.get("channel", "whatsapp"))
    assert scrape.value("studiovault_notification_cost_paise_total", channel=channel) == cost
    assert scrape.value("studiovault_notification_sends_total", channel=channel, outcome="unknown") == unknown
    assert scrape.value("studiovault_event_end_to_end_seconds_count", type=event_type) == 1


def test_a_dead_billing_close_counts_as_a_dead_close() -> None:
    metrics = WorkerMetrics(ROUTER.event_types)
    metrics.outcome("billing.period_closed", "dead", 0.01)
    assert worker_scrape(metrics).value("studiovault_billing_closes_total", outcome="dead") == 1


@pytest.mark.parametrize(("exc", "kind"), [
    (redis.exceptions.ConnectionError("Error 111 connecting"), "unavailable"),
    (redis.exceptions.BusyLoadingError("loading"), "unavailable"),
    (ConnectionRefusedError(111, "refused"), "unavailable"),
    (redis.exceptions.TimeoutError("Timeout reading"), "timeout"),
    (TimeoutError(), "timeout"),
    (redis.exceptions.ResponseError("WRONGTYPE"), "other"),
    (redis.exceptions.DataError("bad"), "other"),
])
def test_redis_errors_are_told_apart_by_kind(exc: BaseException, kind: str) -> None:
    assert redis_error_kind(exc) == kind


@pytest.mark.parametrize(("exc", "kind"), [
    (DatabaseUnavailable("D1 bridge unavailable: HTTP 503"), "unavailable"),
    (ConnectionRefusedError(111, "refused"), "unavailable"),
    (TransientError("D1_ERROR: Network connection lost."), "transient"),
    (VersionConflict("version_conflict"), "conflict"),
    (ConstraintViolation("UNIQUE constraint failed"), "constraint"),
    (QueryError("no such table: x"), "query"),
    (ParameterLimitExceeded("too many SQL variables"), "query"),
    (AlreadyApplied("already_applied"), None),
])
def test_database_errors_are_counted_by_kind_and_the_inbox_guard_is_not_an_error(exc: Exception,
                                                                                 kind: str | None) -> None:
    assert database_error_kind(exc) == kind


def test_the_state_gauges_are_absent_until_a_snapshot_is_read() -> None:
    state = PipelineState()
    assert list(state.collect()) == []
    snap = Snapshot(pending=10_000, dead=0, oldest_pending_age_s=0.0, queue_depth=7, computed_at=1.79e9)
    assert Snapshot.from_json(snap.to_json()) == snap
    assert Snapshot.from_json(b"not json") is None
    state.latest = snap
    values = {(m.name, tuple(s.labels.items())): s.value for m in state.collect() for s in m.samples}
    assert values == {
        ("studiovault_inbox_events", (("status", "pending"),)): 10_000,
        ("studiovault_inbox_events", (("status", "dead"),)): 0,
        ("studiovault_inbox_oldest_pending_age_seconds", ()): 0.0,
        ("studiovault_queue_depth", ()): 7,
        ("studiovault_pipeline_state_timestamp_seconds", ()): 1.79e9,
    }


# ---- one id from end to end -----------------------------------------------------------------------------

def _due(**fields: Any) -> Envelope:
    event = NotificationDue(notification_id=new_id("ntf"), kind="booking_confirmed", project_id=new_id("prj"))
    return envelope_for(event, org_id=ORG, branch_id=BRANCH, dedupe_key=f"k:{new_id('evt')}", **fields)


def test_an_envelope_stored_before_correlation_ids_existed_still_parses() -> None:
    old = ('{{"event_id": "{}", "type": "notification.due", "schema_version": 1, "occurred_at":'
           ' "2026-09-21T13:46:40Z", "org_id": "{}", "branch_id": null, "dedupe_key": "k", "payload": {{}},'
           ' "available_at": null}}').format(new_id("evt"), ORG)
    envelope = Envelope.model_validate_json(old)
    assert (envelope.correlation_id, envelope.causation_id, envelope.trace_context, envelope.received_at) == (
        None, None, None, None)


def test_a_follow_up_is_caused_by_its_parent_and_inherits_its_correlation_and_trace() -> None:
    now = datetime(2026, 9, 21, 13, 46, tzinfo=UTC)
    parent = _due(correlation_id="pay_evt_Lt123", received_at=now - timedelta(seconds=2))
    parent = parent.model_copy(update={"trace_context": {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}})
    child = follow_up_of(parent, _due(), now=now)
    assert (child.causation_id, child.correlation_id, child.received_at) == (parent.event_id, "pay_evt_Lt123", now)
    assert child.trace_context == parent.trace_context
    span = {"traceparent": "00-" + "a" * 32 + "-" + "c" * 16 + "-01"}
    assert follow_up_of(parent, _due(), now=now, trace_context=span).trace_context == span
    root = _due()
    assert follow_up_of(root, _due(), now=now).correlation_id == root.event_id  # a root event is its own


def test_a_follow_up_keeps_what_its_handler_set_explicitly() -> None:
    now = datetime(2026, 9, 21, tzinfo=UTC)
    child = _due(correlation_id="billing:org:2026-10")
    assert follow_up_of(_due(correlation_id="other"), child, now=now).correlation_id == "billing:org:2026-10"


@pytest.mark.parametrize(("which", "where", "params"), [
    (DeadFilter(), "status = 'dead'", ()),
    (DeadFilter(type="payment.captured"), "status = 'dead' AND type = ?", ("payment.captured",)),
    (DeadFilter(type="payment.*"), "status = 'dead' AND substr(type, 1, ?) = ?", (8, "payment.")),
    (DeadFilter(reason="unknown_project"), "status = 'dead' AND instr(last_error, ?) > 0", ("unknown_project",)),
    (DeadFilter(type="media.uploaded", reason="wrong"),
     "status = 'dead' AND type = ? AND instr(last_error, ?) > 0", ("media.uploaded", "wrong")),
])
def test_dead_letter_selections_are_bound_sql(which: DeadFilter, where: str, params: tuple[object, ...]) -> None:
    assert which.where() == (where, params)


def test_a_billing_close_is_correlated_by_its_producer_key() -> None:
    from producers.billing_close import close_envelope  # noqa: PLC0415

    envelope = close_envelope({"id": ORG, "config_json": "{}", "created_at": 0}, datetime(2026, 11, 2, tzinfo=UTC),
                              "2026-10")
    assert isinstance(envelope, Envelope)
    assert envelope.correlation_id == envelope.dedupe_key == f"billing:{ORG}:2026-10"
