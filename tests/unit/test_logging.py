"""Logs are JSON lines with the event's identity; secrets and raw bodies never reach them."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator

import pytest
import structlog

from bootstrap.logging import configure_logging


@pytest.fixture
def json_logging() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging("INFO", json=True, stream=stream)
    yield stream
    structlog.reset_defaults()


def test_log_lines_are_json_with_bound_event_context(json_logging: io.StringIO) -> None:
    log = structlog.get_logger("test")
    with structlog.contextvars.bound_contextvars(event_id="evt_1", type="payment.captured", org_id="org_1",
                                                 branch_id="brn_1", attempt=2):
        log.info("event_applied", outcome="applied")
    line = json.loads(json_logging.getvalue().strip().splitlines()[-1])
    assert line["event"] == "event_applied"
    assert {k: line[k] for k in ("event_id", "type", "org_id", "branch_id", "attempt", "outcome")} == {
        "event_id": "evt_1", "type": "payment.captured", "org_id": "org_1", "branch_id": "brn_1", "attempt": 2,
        "outcome": "applied",
    }
    assert line["level"] == "info"
    assert line["timestamp"].endswith("Z")


def test_secrets_and_raw_bodies_are_redacted(json_logging: io.StringIO) -> None:
    structlog.get_logger("test").warning(
        "suspicious", authorization="Bearer sk_live_123", signature="abc", body='{"card": "4111"}', keep="me"
    )
    out = json_logging.getvalue()
    line = json.loads(out.strip().splitlines()[-1])
    assert line["authorization"] == line["signature"] == line["body"] == "[redacted]"
    assert line["keep"] == "me"
    assert "sk_live_123" not in out
    assert "4111" not in out


@pytest.mark.parametrize("as_json", [True, False])
def test_a_logged_traceback_never_shows_its_frames_local_variables(as_json: bool) -> None:
    stream = io.StringIO()
    configure_logging("INFO", json=as_json, stream=stream)

    def verify(webhook_secret: str) -> None:
        raise ValueError("bad signature")

    try:
        verify("-".join(["whsec", "must", "not", "be", "logged"]))  # not a literal: tracebacks quote source
    except ValueError:
        structlog.get_logger("test").exception("verification_crashed")
    finally:
        structlog.reset_defaults()
    out = stream.getvalue()
    assert "bad signature" in out
    assert "verify" in out  # the frames are there, their locals are not
    assert "whsec-must-not-be-logged" not in out


def test_standard_library_logs_and_tracebacks_are_json_lines_too(json_logging: io.StringIO) -> None:
    import logging  # noqa: PLC0415

    logging.getLogger("uvicorn.error").warning("Started server process [%d]", 42)
    logging.getLogger("arq.worker").warning("job expired")
    try:
        int("boom")
    except ValueError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")
        structlog.get_logger("test").exception("handler_crashed")
    lines = [json.loads(line) for line in json_logging.getvalue().strip().splitlines()]  # each line is JSON
    by_event = {line["event"]: line for line in lines}
    assert by_event["Started server process [42]"]["logger"] == "uvicorn.error"
    assert by_event["Started server process [42]"]["level"] == "warning"
    assert by_event["job expired"]["logger"] == "arq.worker"
    for name in ("Task exception was never retrieved", "handler_crashed"):
        (frame,) = by_event[name]["exception"]
        assert frame["exc_type"] == "ValueError"
        assert "boom" in frame["exc_value"]


def test_arq_per_job_info_lines_are_left_out(json_logging: io.StringIO) -> None:
    import logging  # noqa: PLC0415

    logging.getLogger("arq.worker").info("  0.01s → apply_event()")
    logging.getLogger("arq.connections").info("redis_version=7.0.15")
    out = json_logging.getvalue()
    assert "apply_event()" not in out
    assert "redis_version" in out
