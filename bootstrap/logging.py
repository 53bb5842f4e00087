"""Logging, configured once at process start: one stream, every line JSON in JSON mode.

Our own logs go through structlog (event id, type, org and branch, the correlation and causation ids
bound as context; the trace and span ids when tracing is on). Everything that
logs through the standard library — uvicorn, arq, asyncio, `warnings`, an uncaught exception — is
rendered by the same processors, so in JSON mode every line a process writes is one JSON object and a
traceback is a structured `exception` field, never a boxed block of text. The console format stays
for terminals (`SV_LOG_JSON=false`).
"""

from __future__ import annotations

import json as stdlib_json
import logging
import sys
from types import TracebackType
from typing import Any, TextIO

import orjson
import structlog

from observability import tracing

_SECRET_KEYS = frozenset({"authorization", "token", "secret", "signature", "password", "body", "raw_body"})
# arq logs two INFO lines per job; the unit of work logs the outcome itself (event_applied, ...).
_QUIET_AT_INFO = ("arq.worker", "arq.jobs", "uvicorn.access")


def _redact(_: object, __: str, event_dict: structlog.types.EventDict) -> structlog.types.EventDict:
    """Never log secrets or raw payment payloads, whoever passes them."""
    for key in list(event_dict):
        if key.lower() in _SECRET_KEYS:
            event_dict[key] = "[redacted]"
    return event_dict


def _dumps(event: Any, **kw: Any) -> str:
    """The JSON renderer's serializer: orjson (a tenth of the standard library's cost per line, on every
    event a worker applies); what orjson refuses (an int beyond 64 bits) the standard library writes."""
    try:
        return orjson.dumps(event, default=kw.get("default"), option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return stdlib_json.dumps(event, **kw)


def configure_logging(level: str = "INFO", json: bool = True, stream: TextIO | None = None) -> None:
    """Configure once, at process start. Logs go to `stream` (stderr by default)."""
    stream = stream or sys.stderr
    numeric = logging.getLevelName(level.upper())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        tracing.add_trace_ids,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact,
    ]
    # Tracebacks without their frames' local variables: those hold webhook secrets, API keys, tokens.
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(serializer=_dumps) if json else structlog.dev.ConsoleRenderer(
            colors=stream.isatty(), exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False))
    )
    tracebacks: list[structlog.types.Processor] = [structlog.processors.ExceptionRenderer(
        structlog.tracebacks.ExceptionDictTransformer(show_locals=False))] if json else []
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), *tracebacks, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
    _route_standard_logging(stream, numeric, shared, [*tracebacks, renderer])
    sys.excepthook = _log_uncaught


def _route_standard_logging(stream: TextIO, level: int, shared: list[structlog.types.Processor],
                            final: list[structlog.types.Processor]) -> None:
    """uvicorn, arq, asyncio and warnings through the same processors, into the same stream."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "arq", "asyncio"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    for name in _QUIET_AT_INFO:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    logging.captureWarnings(True)


def _log_uncaught(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, tb)
        return
    structlog.get_logger("studiovault").critical("uncaught_exception", exc_info=(kind, value, tb))
