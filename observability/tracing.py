"""OpenTelemetry tracing, off unless configured (`SV_OTEL_EXPORTER=console`, or a test's exporter).

Spans: the ingress request (`POST /webhooks/<source>`), `publish`, `apply <type>` (one per delivery),
`db.batch`, and `send <channel>` for each provider request. The W3C trace context (`traceparent`)
travels in the envelope (`trace_context`): the ingress stamps its publish span's, the unit of work
its apply span's on each follow-up, and the apply span of an event continues the trace it carries.
So one trace id holds a webhook, the capture it became, the follow-up notification and its WhatsApp
request. Off, every helper here is a no-op costing a branch.

The tracer provider is this module's, not OpenTelemetry's global one (which can be set only once per
process), so tests can install an in-memory exporter and remove it again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import structlog
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

_PROPAGATOR = TraceContextTextMapPropagator()


class _State:
    tracer: Tracer | None = None
    provider: TracerProvider | None = None


def configure(exporter: SpanExporter, *, service: str = "studiovault", batch: bool = False) -> None:
    """Export spans to `exporter` (batched in production, one by one in tests)."""
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415 - the SDK loads only when tracing is on
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor  # noqa: PLC0415

    shutdown()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    _State.provider, _State.tracer = provider, provider.get_tracer("studiovault")


def configure_exporter(name: str, service: str) -> None:
    """The exporter a setting names: `none` (tracing off) or `console` (JSON spans on stdout)."""
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter  # noqa: PLC0415

        configure(ConsoleSpanExporter(service_name=service), service=service, batch=True)
    elif name != "none":
        raise ValueError(f"unknown span exporter {name!r}")


def shutdown() -> None:
    """Flush and stop the exporter; tracing is off afterwards."""
    provider = _State.provider
    _State.provider, _State.tracer = None, None
    if provider is not None:
        provider.shutdown()


def enabled() -> bool:
    return _State.tracer is not None


_NO_SPAN: AbstractContextManager[None] = nullcontext()  # reusable: tracing off costs one call, no generator


def span(name: str, *, kind: SpanKind = SpanKind.INTERNAL, parent: Mapping[str, str] | None = None,
         attributes: Mapping[str, Any] | None = None, error_status: bool = True) -> AbstractContextManager[Span | None]:
    """A span around the block (None when tracing is off). `parent`: a carried W3C trace context to
    continue instead of the current one. `error_status=False`: an exception is not an error here
    (arq's `Retry`)."""
    if _State.tracer is None:
        return _NO_SPAN
    return _span(_State.tracer, name, kind=kind, parent=parent, attributes=attributes, error_status=error_status)


@contextmanager
def _span(tracer: Tracer, name: str, *, kind: SpanKind, parent: Mapping[str, str] | None,
          attributes: Mapping[str, Any] | None, error_status: bool) -> Iterator[Span]:
    context = _PROPAGATOR.extract(dict(parent)) if parent else None
    with tracer.start_as_current_span(name, context=context, kind=kind, attributes=dict(attributes or {}),
                                      record_exception=error_status, set_status_on_exception=error_status) as s:
        yield s


def carrier() -> dict[str, str] | None:
    """The current span's W3C trace context (`{"traceparent": ...}`), to carry in an envelope."""
    if _State.tracer is None:
        return None
    found: dict[str, str] = {}
    _PROPAGATOR.inject(found)
    return found or None


def add_trace_ids(_: object, __: str, event_dict: structlog.types.EventDict) -> structlog.types.EventDict:
    """structlog processor: `trace_id` and `span_id` on every line logged inside a recorded span."""
    if _State.tracer is not None:
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            event_dict.setdefault("trace_id", format(ctx.trace_id, "032x"))
            event_dict.setdefault("span_id", format(ctx.span_id, "016x"))
    return event_dict
