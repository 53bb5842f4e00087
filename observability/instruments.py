"""Instruments the composition root wraps around the real adapters: they count errors by kind, time
or trace the call, and re-raise; nothing else changes. One wrapper per port, so each error is counted
once, where it happens, whoever called:

- `InstrumentedDatabase`: database errors by kind, and a `db.batch` span per batch;
- `CountingQueue`, `CountingLimiter`: Redis errors by kind (enqueue, queue depth, the send cap);
- `InstrumentedSender`: every provider request by channel and outcome, and a `send <channel>` span.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from opentelemetry.trace import SpanKind

from jobqueue import Job, Queue, enqueue_all
from observability import tracing
from observability.metrics import ErrorSink, WorkerMetrics
from providers.port import Channel, OutboundMessage, RateLimiter, Sender, SendRejected, SendResult
from store import (
    AlreadyApplied,
    ConstraintViolation,
    Database,
    DatabaseError,
    DatabaseUnavailable,
    SqlValue,
    Statement,
    TransientError,
    VersionConflict,
)
from store.port import Row


def redis_error_kind(exc: BaseException) -> str:
    """`timeout`, `unavailable` or `other`, told by the exception's classes: redis-py's `TimeoutError`
    and `ConnectionError` share their names with the builtins they stand for, so no import of redis is
    needed here (the ingress, which uses this, must not import it)."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    if "TimeoutError" in names:
        return "timeout"
    if "ConnectionError" in names or isinstance(exc, OSError):
        return "unavailable"
    return "other"


def database_error_kind(exc: BaseException) -> str | None:
    """The kind a database failure is counted as; None for the inbox guard (exactly-once at work, not
    an error)."""
    if isinstance(exc, AlreadyApplied):
        return None
    if isinstance(exc, DatabaseUnavailable | OSError):
        return "unavailable"
    if isinstance(exc, TransientError):
        return "transient"
    if isinstance(exc, VersionConflict):
        return "conflict"
    if isinstance(exc, ConstraintViolation):
        return "constraint"
    return "query"  # QueryError, ParameterLimitExceeded, and anything unexpected


class InstrumentedDatabase:
    """A `Database` that counts the errors of the one it wraps (other attributes pass through)."""

    def __init__(self, inner: Database, errors: ErrorSink) -> None:
        self.inner, self.errors = inner, errors

    def __getattr__(self, name: str) -> Any:  # the adapter's own extras: `path`, `requests`
        return getattr(self.inner, name)

    def _count(self, exc: Exception) -> None:
        kind = database_error_kind(exc)
        if kind is not None:
            self.errors.database_error(kind)

    async def query(self, sql: str, params: Sequence[SqlValue] = ()) -> list[Row]:
        try:
            return await self.inner.query(sql, params)
        except Exception as exc:
            self._count(exc)
            raise

    async def query_many(self, statements: Sequence[Statement]) -> list[list[Row]]:
        try:
            return await self.inner.query_many(statements)
        except Exception as exc:
            self._count(exc)
            raise

    async def batch(self, statements: Sequence[Statement]) -> list[int]:
        with tracing.span("db.batch", kind=SpanKind.CLIENT, attributes={"db.statements": len(statements)}):
            try:
                return await self.inner.batch(statements)
            except Exception as exc:
                self._count(exc)
                raise

    async def batches(self, units: Sequence[Sequence[Statement]]) -> list[list[int] | DatabaseError]:
        """Group commit: a unit's error in its slot is counted as its own batch's would be."""
        with tracing.span("db.batches", kind=SpanKind.CLIENT, attributes={"db.units": len(units)}):
            try:
                results = await self.inner.batches(units)
            except Exception as exc:
                self._count(exc)
                raise
        for result in results:
            if isinstance(result, DatabaseError):
                self._count(result)
        return results

    async def close(self) -> None:
        await self.inner.close()


class CountingQueue:
    """A `Queue` that counts the failures of the one it wraps."""

    def __init__(self, inner: Queue, errors: ErrorSink) -> None:
        self.inner, self.errors = inner, errors

    async def enqueue(self, envelope_json: str, event_id: str, defer_until: datetime | None = None) -> bool:
        try:
            return await self.inner.enqueue(envelope_json, event_id, defer_until)
        except Exception as exc:
            self.errors.redis_error(redis_error_kind(exc))
            raise

    async def enqueue_many(self, jobs: Sequence[Job]) -> list[bool]:
        """The inner queue's `enqueue_many`, or its `enqueue` for each job (a queue without batches)."""
        try:
            return await enqueue_all(self.inner, jobs)
        except Exception as exc:
            self.errors.redis_error(redis_error_kind(exc))
            raise

    async def depth(self) -> int:
        try:
            return await self.inner.depth()
        except Exception as exc:
            self.errors.redis_error(redis_error_kind(exc))
            raise


class CountingLimiter:
    """A `RateLimiter` that counts the failures of the one it wraps."""

    def __init__(self, inner: RateLimiter, errors: ErrorSink) -> None:
        self.inner, self.errors = inner, errors

    async def acquire(self, key: str, now: datetime, limit: int, window_s: int = 60) -> datetime | None:
        try:
            return await self.inner.acquire(key, now, limit, window_s)
        except Exception as exc:
            self.errors.redis_error(redis_error_kind(exc))
            raise


class InstrumentedSender:
    """A `Sender` whose every request is counted (`sent`, `retry`, `failed`) and traced."""

    def __init__(self, inner: Sender, metrics: WorkerMetrics) -> None:
        self.inner, self.metrics = inner, metrics
        self.channel: Channel = inner.channel

    async def send(self, message: OutboundMessage) -> SendResult:
        attributes = {"studiovault.channel": self.channel, "studiovault.notification_id": message.reference,
                      "studiovault.kind": message.kind}
        with tracing.span(f"send {self.channel}", kind=SpanKind.CLIENT, attributes=attributes) as span:
            try:
                result = await self.inner.send(message)
            except SendRejected:
                self.metrics.sent(self.channel, "failed")
                raise
            except Exception:  # SendRetryable, and anything unexpected: the unit of work retries
                self.metrics.sent(self.channel, "retry")
                raise
            self.metrics.sent(self.channel, "sent")
            if span is not None and result.provider_message_id:
                span.set_attribute("studiovault.provider_message_id", result.provider_message_id)
            return result
