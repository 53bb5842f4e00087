"""Status webhooks end to end: the real ingress app (uvicorn on a loopback port) writing the inbox the
notification harness applies from, with one injected clock for both. Signatures are made by the
status fakes (tests/support/fakes/status), independently of the code under test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from config import IngressSettings
from events.envelope import Envelope
from ingress.app import create_app
from ingress.pipeline import IngressDeps
from tests.support.fakes.status import resend as rs
from tests.support.gateway import serve
from tests.support.notify_harness import Harness

APP_SECRET = "wa-app-secret-0123456789abcdef"
OLD_APP_SECRET = "wa-app-secret-before-rotation"
VERIFY_TOKEN = "studiovault-verify-token-7f3a"
MSG91_TOKEN = "dlr-token-5b0f6c0e3c0a4f1fa1b2c3d4e5f60718"
RESEND_SECRET = rs.make_secret(b"resend-test-signing-key-32-bytes!")
OLD_RESEND_SECRET = rs.make_secret(b"resend-old-signing-key-32-bytes!!")


def status_settings(**overrides: Any) -> IngressSettings:
    values: dict[str, Any] = {
        "whatsapp_app_secrets": [SecretStr(APP_SECRET), SecretStr(OLD_APP_SECRET)],
        "whatsapp_verify_token": SecretStr(VERIFY_TOKEN),
        "msg91_webhook_tokens": [SecretStr(MSG91_TOKEN)],
        "resend_webhook_secrets": [SecretStr(RESEND_SECRET), SecretStr(OLD_RESEND_SECRET)],
    }
    values.update(overrides)
    return IngressSettings(**values)


@dataclass
class Flow:
    """An ingress over real HTTP and the harness that applies what it records."""

    h: Harness
    http: httpx.AsyncClient
    url: str

    @property
    def now_s(self) -> int:
        return int(self.h.clock.now.timestamp())

    async def send(self, request: httpx.Request) -> httpx.Response:
        return await self.http.send(request)

    async def pending(self) -> list[Envelope]:
        return await pending(self.h)

    async def settle(self, rounds: int = 12) -> dict[str, str]:
        return await settle(self.h, rounds)


async def pending(h: Harness) -> list[Envelope]:
    rows = await h.deps.db.query(
        "SELECT payload_json FROM event_inbox WHERE status = 'pending' ORDER BY created_at, id")
    return [Envelope.model_validate_json(str(r["payload_json"])) for r in rows]


async def settle(h: Harness, rounds: int = 12) -> dict[str, str]:
    """Apply every pending event (follow-ups included) until none is pending, moving the clock by the
    longest wait any of them asked for; returns each event's last outcome by event id."""
    outcomes: dict[str, str] = {}
    for _ in range(rounds):
        envelopes = await pending(h)
        if not envelopes:
            return outcomes
        waits: list[float] = []
        for env in envelopes:
            before = len(h.retries)
            outcomes[env.event_id] = await h.apply(env)
            waits += h.retries[before:]
        if waits:
            h.clock.advance(max(waits))
    raise AssertionError(f"events still pending after {rounds} rounds: {await pending(h)}")


@contextlib.asynccontextmanager
async def status_flow(h: Harness, **overrides: Any) -> AsyncIterator[Flow]:
    @contextlib.asynccontextmanager
    async def open_deps() -> AsyncIterator[IngressDeps]:
        yield IngressDeps(db=h.deps.db, publisher=h.deps.publisher, clock=h.clock)

    app = create_app(status_settings(**overrides), open_deps)
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        yield Flow(h, http, url)
