"""The one job: apply an event to the database exactly once, as one atomic batch.

    read → handler plans → batch [inbox guard, plan, inbox applied, follow-ups] → enqueue follow-ups

Delivery is at-least-once (arq redelivers, the re-drive re-enqueues, gateways retry); the inbox
guard makes a second delivery of an applied event abort its batch with `AlreadyApplied`, so its
effect happens once. Failures follow `workers.policy`: retry with backoff, or dead-letter; an
unreachable database spends no failure budget.

Observability lives here, the one place every delivery passes: each outcome is counted and timed by
type (`WorkerMetrics`), a committed batch records its end-to-end latency and what its plan sent or
billed, every log line carries the event's `correlation_id` and `causation_id`, and the delivery is
one `apply <type>` span continuing the trace its envelope carries. Follow-ups are stamped with this
event as their cause, its correlation id and this span's trace context.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, cast

import structlog
from arq import ArqRedis, Retry
from opentelemetry.trace import SpanKind
from pydantic import ValidationError
from redis.exceptions import RedisError

from core.clock import epoch_ms
from events import inbox
from events.envelope import Envelope, Event, follow_up_of
from handlers.base import Defer, HandlerContext, Plan, ReadSet, RetryLater, SelfConflict
from observability import tracing
from store import AlreadyApplied, TransientError, VersionConflict, as_check
from workers.deps import Deps, JobContext
from workers.policy import describe, is_permanent

log = structlog.get_logger("studiovault.worker")
# While the database is unreachable, an event is retried at least this often: work resumes within
# seconds of its return, and an outage spends no event's failure budget.
UNAVAILABLE_RETRY_CAP_S = 5.0
CONFLICTS_KEPT_S = 86_400  # an event's version-conflict count lives this long in Redis


class Deferred(Retry):
    """arq's `Retry` for a deferral (not before a time), told apart from a retry in the metrics."""


async def apply_event(ctx: dict[Any, Any], envelope_json: str) -> str:
    """arq job `apply_event`: returns the outcome (applied, ignored, duplicate, dead, ...)."""
    job = cast(JobContext, ctx)
    deps = job["deps"]
    attempt = job.get("job_try", 1)
    started = time.perf_counter()
    try:
        envelope = Envelope.model_validate_json(envelope_json)
    except ValidationError as exc:
        dead = await _dead_letter(deps, str(job["job_id"]), f"invalid envelope: {exc}", attempt)
        deps.metrics.outcome("", dead, time.perf_counter() - started)
        return dead
    correlation_id = envelope.correlation_id or envelope.event_id  # envelopes from before correlation ids
    with structlog.contextvars.bound_contextvars(
        event_id=envelope.event_id, type=envelope.type, org_id=envelope.org_id, branch_id=envelope.branch_id,
        attempt=attempt, correlation_id=correlation_id, causation_id=envelope.causation_id,
    ), tracing.span(f"apply {envelope.type}", kind=SpanKind.CONSUMER, parent=envelope.trace_context,
                    error_status=False, attributes={"studiovault.event_id": envelope.event_id,
                                                    "studiovault.correlation_id": correlation_id,
                                                    "studiovault.attempt": attempt}) as span:
        outcome: str | None = None
        try:
            outcome = await _apply(deps, envelope, attempt, job.get("redis"))
        except Deferred:
            outcome = "deferred"
            raise
        except TransientError as exc:  # the database is unreachable or overloaded: not the event's fault
            outcome = "retry"
            deps.outages.failed("database", exc)
            delay = min(deps.backoff.delay(attempt), UNAVAILABLE_RETRY_CAP_S)
            raise Retry(defer=timedelta(seconds=delay)) from exc
        except Exception:  # arq's Retry, or a failure even recording failed: the retry or re-drive repeats it
            outcome = "retry"
            raise
        else:
            deps.outages.ok("database")
            return outcome
        finally:  # a cancelled job (shutdown) has no outcome: it runs again elsewhere
            if outcome is not None:
                deps.metrics.outcome(envelope.type, outcome, time.perf_counter() - started)
                if span is not None:
                    span.set_attribute("studiovault.outcome", outcome)


async def _apply(deps: Deps, envelope: Envelope, attempt: int, redis: ArqRedis | None = None) -> str:
    started = time.perf_counter()
    now = deps.clock()
    if envelope.available_at and envelope.available_at > now:
        raise Deferred(defer=envelope.available_at - now)  # enqueued early (a re-drive): wait for its time
    limit_s = deps.settings.worker.job_timeout * 0.8
    try:
        try:
            async with asyncio.timeout(limit_s):
                outcome, details = await _run_unit_of_work(deps, envelope, now, attempt)
        except TimeoutError as exc:  # a database (or a row lock) too slow to answer: not the event's fault
            raise TransientError(f"the unit of work did not finish within {limit_s:g} s") from exc
    except AlreadyApplied:
        return await _already_applied(deps, envelope)
    except VersionConflict as exc:
        return await _conflicted(deps, envelope, exc, await _count_conflict(deps, envelope.event_id, redis))
    except TransientError:
        raise  # retried by apply_event without spending the event's failure budget
    except Defer as exc:
        await deps.db.batch([inbox.defer(envelope.event_id, exc.until, now, str(exc))])
        log.info("event_deferred", outcome="deferred", until=exc.until.isoformat(), reason=str(exc))
        raise Deferred(defer=max(exc.until - now, timedelta(0))) from exc
    except Exception as exc:  # noqa: BLE001 - every failure is classified: retry or dead-letter
        return await _failed(deps, envelope, exc, now)
    log.info("event_applied", outcome=outcome, duration_ms=round((time.perf_counter() - started) * 1000, 2),
             **details)
    return outcome


async def _run_unit_of_work(
    deps: Deps, envelope: Envelope, now: datetime, attempt: int
) -> tuple[str, Mapping[str, Any]]:
    event = deps.router.registry.parse(envelope)
    key = event.lock_key()
    if key is None:
        return await _plan_and_commit(deps, envelope, event, now, attempt)
    async with deps.locks.hold(key):
        return await _plan_and_commit(deps, envelope, event, now, attempt)


async def _plan_and_commit(
    deps: Deps, envelope: Envelope, event: Event, now: datetime, attempt: int
) -> tuple[str, Mapping[str, Any]]:
    handler = deps.router.handler_for(event)
    ctx = HandlerContext(envelope=envelope, db=deps.db, now=now, attempt=attempt, services=deps.services)
    plan: Plan = await handler(event, ctx)
    # Follow-ups are caused by this event, in its correlation and its trace (this apply span's).
    trace_context = tracing.carrier()
    children = [follow_up_of(envelope, f, now=now, trace_context=trace_context) for f in plan.follow_ups]
    follow_ups = [inbox.insert(f, now) for f in children]
    statements = [
        inbox.guard_pending(envelope.event_id),
        *plan.statements,
        inbox.mark_applied(envelope.event_id, now, plan.outcome),
        *follow_ups,
    ]
    deps.failpoints.hit("before_batch")
    try:
        changes = await deps.db.batch(statements)
    except VersionConflict:
        if plan.read_set is not None:
            await _diagnose_conflict(deps, plan, plan.read_set)
        raise
    deps.failpoints.hit("after_batch")
    deps.metrics.committed(envelope.type, plan.outcome, plan.log, _end_to_end_s(envelope, plan, deps.clock()))
    inserted = changes[len(changes) - len(follow_ups):] if follow_ups else []
    for follow_up, n in zip(children, inserted, strict=True):
        if n:  # 0: an event with the same dedupe key exists already (e.g. one photos_ready per project)
            await deps.publisher.enqueue(follow_up)
    return plan.outcome, plan.log


async def _diagnose_conflict(deps: Deps, plan: Plan, read_set: ReadSet) -> None:
    """Tell a real concurrent change (retry) from a deterministic self-conflict (raise `SelfConflict`):
    re-run the plan's reads and its assertions in ONE round trip (one consistent snapshot). If the reads
    return what the plan was made from and an assertion still fails, nothing changed under the plan:
    the plan contradicts the data, and spending the conflict budget on it would only repeat it."""
    checks = [(s, c) for s in plan.statements if (c := as_check(s)) is not None]
    results = await deps.db.query_many([*(c for _, c in checks), *read_set.statements])
    failing = [s for (s, _), rows in zip(checks, results, strict=False) if not rows or not next(iter(rows[0].values()))]
    same = [list(map(dict, rows)) for rows in results[len(checks):]] == [list(map(dict, r)) for r in read_set.rows]
    if same and failing:
        raise SelfConflict(f"{len(failing)} assertion(s) fail against the rows the plan was made from, e.g."
                           f" {failing[0].sql[:300]}")


def _end_to_end_s(envelope: Envelope, plan: Plan, committed_at: datetime) -> float | None:
    """Seconds from the event's receipt (or the end of a wait it was given on purpose: its
    `available_at`, the plan's `not_before`) to `committed_at`. None for envelopes published before
    they carried `received_at`."""
    if envelope.received_at is None:
        return None
    start = max(t for t in (envelope.received_at, envelope.available_at, plan.not_before) if t is not None)
    return (committed_at - start).total_seconds()


async def _already_applied(deps: Deps, envelope: Envelope) -> str:
    row = await inbox.get(deps.db, envelope.event_id)
    status = str(row["status"]) if row else "missing"
    if status == "pending":  # guard raced with a concurrent delivery that has since rolled back: retry
        raise Retry(defer=deps.backoff.delay(1))
    log.info("event_duplicate_delivery", outcome="duplicate", inbox_status=status)
    return "duplicate"


async def _count_conflict(deps: Deps, event_id: str, redis: ArqRedis | None) -> int:
    """This event's version conflicts so far, this one included. Counted apart from arq's `job_try`,
    which every retry raises (a database outage's, a deferral's): the cap is on contention only."""
    if redis is None:
        return 1
    key = f"{deps.settings.queue.queue_name}:conflicts:{event_id}"
    try:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, CONFLICTS_KEPT_S)
            count, _ = await pipe.execute()
    except RedisError as exc:  # the retry is what matters; an uncounted conflict only delays the cap
        log.warning("conflict_not_counted", error=f"{type(exc).__name__}: {exc}"[:300])
        return 1
    return int(count)


async def _conflicted(deps: Deps, envelope: Envelope, exc: VersionConflict, conflicts: int) -> str:
    """A row changed between our read and our batch: re-read and re-plan soon. Does not use the
    failure budget (contention is not the event's fault), but is capped so a livelock is parked."""
    deps.metrics.conflict(envelope.type)
    if conflicts > deps.settings.worker.max_conflict_retries:
        return await _dead_letter(deps, envelope.event_id,
                                  f"retries exhausted after {conflicts} version conflicts", conflicts)
    delay = deps.backoff.delay(min(conflicts, 6))
    log.info("event_retry", outcome="retry", error=f"VersionConflict: {exc}", conflicts=conflicts,
             retry_in_s=round(delay, 3))
    raise Retry(defer=timedelta(seconds=delay)) from exc


async def _failed(deps: Deps, envelope: Envelope, exc: Exception, now: datetime) -> str:
    reason = describe(exc)
    row = await inbox.get(deps.db, envelope.event_id)
    failures = int(row["attempts"]) if row else 0
    attempt = failures + 1
    if is_permanent(exc):
        return await _dead_letter(deps, envelope.event_id, reason, attempt)
    if attempt >= deps.settings.worker.max_attempts and not _provider_still_within_window(deps, exc, row, now):
        return await _dead_letter(deps, envelope.event_id, f"retries exhausted after {attempt} attempts: {reason}",
                                  attempt)
    delay = deps.backoff.delay(attempt)
    if isinstance(exc, RetryLater):
        delay = max(delay, exc.after_s)
    await deps.db.batch([inbox.record_failure(envelope.event_id, reason, now, now + timedelta(seconds=delay))])
    log.warning("event_retry", outcome="retry", error=reason, failures=attempt, retry_in_s=round(delay, 3))
    raise Retry(defer=timedelta(seconds=delay)) from exc


def _provider_still_within_window(deps: Deps, exc: Exception, row: Mapping[str, Any] | None, now: datetime) -> bool:
    """A provider's "not now" (429, 5xx, timeouts) keeps being retried, at the backoff's cap, until the
    event is `SV_PROVIDER_RETRY_WINDOW_S` old: an outage of a few hours parks nothing that would succeed."""
    if not isinstance(exc, RetryLater) or row is None:
        return False
    return epoch_ms(now) - int(row["created_at"]) < deps.settings.worker.provider_retry_window_s * 1000


async def _dead_letter(deps: Deps, event_id: str, reason: str, attempt: int) -> str:
    await deps.db.batch([inbox.mark_dead(event_id, reason, deps.clock())])
    log.error("event_dead_lettered", outcome="dead", event_id=event_id, error=reason, attempts=attempt)
    return "dead"
