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
