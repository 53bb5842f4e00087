"""structlog, configured once at process start: JSON lines with the event's id, type, org and branch,
its correlation and causation ids, and the trace and span ids when tracing is on."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

from observability import tracing

_SECRET_KEYS = frozenset({"authorization", "token", "secret", "signature", "password", "body", "raw_body"})


def _redact(_: object, __: str, event_dict: structlog.types.EventDict) -> structlog.types.EventDict:
    """Never log secrets or raw payment payloads, whoever passes them."""
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


def configure_logging(level: str = "INFO", json: bool = True, stream: TextIO | None = None) -> None:
    """Configure once, at process start. Logs go to `stream` (stderr by default)."""
    stream = stream or sys.stderr
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            tracing.add_trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    # arq and uvicorn log through the standard library: route them to stderr at the same level.
    logging.basicConfig(level=level.upper(), stream=stream, format="%(message)s")
