"""What every ingress endpoint shares: the request pipeline and its one error type.

    deadline ─► read the body (size limit) ─► the source verifies, parses, publishes ─► 2xx
                       └─ any refusal: `IngressError`, answered by the app's one exception handler

A 2xx is sent only after the inbox write. Refusals are JSON `{"error": <code>, "detail": <text>, ...}`:
4xx means "do not send this again as it is"; 503 (with `Retry-After`) means nothing was accepted and
the sender should retry. The deadline (`SV_INGRESS_DEADLINE_S`, 4 s) answers 503 before a gateway's
own timeout (Razorpay: 5 s) would make it count a failure.

Observability lives in `endpoint`, the one place every webhook passes: it counts the request by
source and answer code (`IngressMetrics`), times it, measures the body, counts signature refusals
(`SignatureRefused`) and publish failures, and makes the request one span. A source binds the
delivery's correlation id (the gateway's event id, the relay's message id) with `correlate` once the
signature holds; every later log line of the request carries it, and `IngressContext.publish` puts
it, with the trace context, in the envelope.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog
from opentelemetry.trace import SpanKind
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from config import IngressSettings
from core.clock import utc_now
from events.envelope import Envelope
from events.publish import Published, Publisher
from gateways.directory import AccountDirectory
from observability import tracing
from observability.metrics import IngressMetrics
from store import Database, DatabaseError

log = structlog.get_logger("studiovault.ingress")


class IngressError(Exception):
    """A refusal, answered as `status` with `{"error": error, "detail": detail, **extra}`."""

    def __init__(self, status: int, error: str, detail: str, *, retry_after: int | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.retry_after, self.extra = status, error, detail, retry_after, extra


class SignatureRefused(IngressError):
    """A refusal because the signature is missing, malformed or does not verify (counted apart)."""


async def answer_error(_: Request, exc: Exception) -> Response:
    """The app's one handler for `IngressError` (registered in `ingress.app`)."""
    if not isinstance(exc, IngressError):  # pragma: no cover - registered for IngressError only
        raise exc
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
    return JSONResponse({"error": exc.error, "detail": exc.detail, **exc.extra}, exc.status, headers)


@dataclass(frozen=True)
class IngressDeps:
    """What the ingress is given by the composition root: it opens nothing itself."""

    db: Database
    publisher: Publisher
    # The gateway accounts (webhook secrets, tenants), cached; None: no payment endpoint can verify (503).
    accounts: AccountDirectory | None = None
    # Readiness checks by name ("database", "redis"): each raises when its dependency is not usable.
    checks: Mapping[str, Callable[[], Awaitable[object]]] = field(default_factory=dict)
    clock: Callable[[], datetime] = utc_now
    metrics: IngressMetrics = field(default_factory=IngressMetrics)


@dataclass(frozen=True)
class IngressContext:
    """`request.app.state.ingress`: the settings and the dependencies every endpoint reads; each
    request gets its own (`for_request`), which records what it published."""

    config: IngressSettings
    deps: IngressDeps
    published: list[Published] = field(default_factory=list)

    @property
    def db(self) -> Database:
        return self.deps.db

    @property
    def publisher(self) -> Publisher:
        return self.deps.publisher

    def now(self) -> datetime:
        return self.deps.clock()

    def for_request(self) -> IngressContext:
        return IngressContext(self.config, self.deps)

    async def publish(self, envelope: Envelope, status: str = "pending", note: str | None = None, *,
                      producer: str | None = None) -> Published:
        """Publish (inbox, then queue) in a `publish` span whose trace context the envelope carries."""
        with tracing.span("publish", kind=SpanKind.PRODUCER,
                          attributes={"studiovault.event_id": envelope.event_id, "studiovault.type": envelope.type}):
            carried = tracing.carrier()
            if carried and envelope.trace_context is None:
                envelope = envelope.model_copy(update={"trace_context": carried})
            result = await self.deps.publisher.publish(envelope, status, note, producer=producer)
        self.published.append(result)
        return result


def correlate(correlation_id: str) -> None:
    """Bind the delivery's correlation id to every later log line of this request."""
    structlog.contextvars.bind_contextvars(correlation_id=correlation_id)


def context(request: Request) -> IngressContext:
    ctx: IngressContext = request.app.state.ingress
    return ctx


# An endpoint's own work, once the body is read: verify, parse, publish, answer.
Accept = Callable[[Request, bytes, datetime, IngressContext], Awaitable[Response]]


def _span_name(request: Request) -> str:
    """`POST /webhooks/razorpay/{endpoint_key}`: the route, not the URL (path parameters are secrets or ids)."""
    path = request.url.path
    for name, value in request.path_params.items():
        path = path.replace(f"/{value}", f"/{{{name}}}")
    return f"{request.method} {path}"


def endpoint(source: str, accept: Accept) -> Callable[[Request], Awaitable[Response]]:
    """The route function for `source`: the deadline, the body limit, and errors turned into answers."""

    async def handle(request: Request) -> Response:
        ctx = context(request).for_request()
        received_at = ctx.now()
        started = time.perf_counter()
        seen = _Seen(declared_bytes(request))
        with _log_scope(), tracing.span(_span_name(request), kind=SpanKind.SERVER,
                                        attributes={"studiovault.source": source}) as span:
            try:
                response = await _answer(request, ctx, received_at, seen)
            except IngressError as exc:
                seen.status = exc.status
                seen.signature_failed = isinstance(exc, SignatureRefused)
                seen.publish_failed = exc.error in ("unavailable", "timeout")
                raise
            else:
                seen.status = response.status_code
                return response
            finally:
                if span is not None:
                    span.set_attribute("http.response.status_code", seen.status)
                ctx.deps.metrics.request(source, seen.status, time.perf_counter() - started, seen.body_bytes,
                                         signature_failed=seen.signature_failed,
                                         publish_failed=seen.publish_failed or any(p.enqueue_failed
                                                                                   for p in ctx.published))

    async def _answer(request: Request, ctx: IngressContext, received_at: datetime, seen: _Seen) -> Response:
        try:
            async with asyncio.timeout(ctx.config.ingress_deadline_s):
                body = await read_body(request, ctx.config.max_body_bytes)
                seen.body_bytes = len(body)
                return await accept(request, body, received_at, ctx)
        except IngressError as exc:
            log.warning("webhook_refused", source=source, status=exc.status, error=exc.error, detail=exc.detail)
            raise
        except ValidationError as exc:
            # Signed, but a field does not fit our models (e.g. an over-long event id): a 4xx, never a 500.
            log.warning("webhook_refused", source=source, status=422, error="invalid_field", detail=str(exc))
            raise IngressError(422, "invalid_field", validation_problems(exc)[:1000]) from exc
        except DatabaseError as exc:
            log.error("webhook_not_recorded", source=source, error=type(exc).__name__)  # noqa: TRY400 - no trace
            raise IngressError(503, "unavailable", f"the inbox is unavailable ({type(exc).__name__}); retry",
                               retry_after=ctx.config.ingress_retry_after_s) from exc
        except TimeoutError as exc:
            log.error("webhook_timeout", source=source)  # noqa: TRY400 - a deadline, no traceback to show
            raise IngressError(503, "timeout", "could not record the event in time; retry",
                               retry_after=ctx.config.ingress_retry_after_s) from exc

    return handle


@dataclass
class _Seen:
    """What the metrics record about one request (a 500 unless an answer was reached)."""

    body_bytes: int | None
    status: int = 500
    signature_failed: bool = False
    publish_failed: bool = False


def declared_bytes(request: Request) -> int | None:
    """The Content-Length, until the body is read (a refused oversized body is never read)."""
    declared = request.headers.get("content-length")
    return int(declared) if declared is not None and declared.isdigit() else None


@contextmanager
def _log_scope() -> Iterator[None]:
    """Log context bound during the request (the correlation id) ends with it."""
    before = structlog.contextvars.get_contextvars()
    try:
        yield
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(**before)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise IngressError(413, "body_too_large", f"the body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise IngressError(413, "body_too_large", f"the body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def validation_problems(exc: ValidationError) -> str:
    """`field.path: message; ...` for a pydantic error."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
