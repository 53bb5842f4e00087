"""Local stand-ins for the notification providers, speaking their wire formats over real sockets.

One starlette app under uvicorn on a free loopback port, in a background thread, serves:

- `POST /{version}/{phone_number_id}/messages` — WhatsApp Cloud API (Graph errors `{"error": {"code": ..}}`);
- `POST /api/v5/flow` — MSG91 flow (`{"type": "success", "message": <request id>}`);
- `POST /emails` — Resend, with its idempotency semantics: the same key with the same body returns the
  original response and delivers nothing new; the same key with another body is a 409.

Every request is recorded (provider, path, headers, JSON body, the status answered). Responses are
scriptable per provider (a queue: 5xx/429 storms, permanent errors, slow answers); when the queue is
empty the provider accepts.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.redis_server import free_port


@dataclass(frozen=True)
class Scripted:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Recorded:
    provider: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int


class ProviderServers:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.scripts: dict[str, deque[Scripted]] = {"whatsapp": deque(), "sms": deque(), "email": deque()}
        self.deliveries: dict[str, int] = {"whatsapp": 0, "sms": 0, "email": 0}  # messages actually accepted
        self._idempotent: dict[str, tuple[dict[str, Any], Scripted]] = {}
        self._lock = threading.Lock()
        self.url = ""

    def script(self, provider: str, *responses: Scripted) -> None:
        with self._lock:
            self.scripts[provider].extend(responses)

    def requests_for(self, provider: str) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.provider == provider]

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            for queue in self.scripts.values():
                queue.clear()
            self.deliveries = dict.fromkeys(self.deliveries, 0)
            self._idempotent.clear()

    def _next(self, provider: str, default: Scripted) -> Scripted:
        with self._lock:
            queue = self.scripts[provider]
            return queue.popleft() if queue else default

    async def _answer(self, provider: str, request: Request, default: Scripted) -> JSONResponse:
        body = await request.json()
        headers = {k.lower(): v for k, v in request.headers.items()}
        key = headers.get("idempotency-key")
        scripted = None
        if key is not None:
            with self._lock:
                seen = self._idempotent.get(key)
            if seen is not None:
                scripted = seen[1] if seen[0] == body else Scripted(
                    409, {"statusCode": 409, "name": "invalid_idempotent_request",
                          "message": "Same idempotency key used with a different request payload."})
        if scripted is None:
            scripted = self._next(provider, default)
            if scripted.status < 300:
                with self._lock:
                    self.deliveries[provider] += 1
                    if key is not None:
                        self._idempotent[key] = (body, scripted)
        if scripted.delay_s:
            await asyncio.sleep(scripted.delay_s)
        with self._lock:
            self.requests.append(Recorded(provider, request.url.path, headers, body, scripted.status))
        return JSONResponse(scripted.body, status_code=scripted.status, headers=scripted.headers)

    async def whatsapp(self, request: Request) -> JSONResponse:
        n = self.deliveries["whatsapp"] + 1
        body = await request.json()
        return await self._answer("whatsapp", request, Scripted(200, {
            "messaging_product": "whatsapp", "contacts": [{"input": body.get("to"), "wa_id": body.get("to")}],
            "messages": [{"id": f"wamid.TEST{n}", "message_status": "accepted"}],
        }))

    async def sms(self, request: Request) -> JSONResponse:
        n = self.deliveries["sms"] + 1
        return await self._answer("sms", request, Scripted(200, {"type": "success", "message": f"{n:024x}"}))

    async def email(self, request: Request) -> JSONResponse:
        n = self.deliveries["email"] + 1
        return await self._answer("email", request, Scripted(200, {"id": f"00000000-0000-4000-8000-{n:012d}"}))

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/{version}/{phone_number_id}/messages", self.whatsapp, methods=["POST"]),
            Route("/api/v5/flow", self.sms, methods=["POST"]),
            Route("/emails", self.email, methods=["POST"]),
        ])


@contextmanager
def provider_servers() -> Iterator[ProviderServers]:
    """Start the fake providers on a free loopback port; yield them (their `url` is the base URL)."""
    servers = ProviderServers()
    port = free_port()
    config = uvicorn.Config(servers.app(), host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                            ws="none", http="h11", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="provider-servers", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the fake provider server did not start")
        time.sleep(0.01)
    servers.url = f"http://127.0.0.1:{port}"
    try:
        yield servers
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def graph_error(code: int, status: int = 400, message: str = "", retry_after: str | None = None) -> Scripted:
    """A Graph API error answer, as WhatsApp sends it."""
    headers = {"retry-after": retry_after} if retry_after else {}
    return Scripted(status, {"error": {"message": message or f"(#{code})", "type": "OAuthException", "code": code,
                                       "fbtrace_id": "AbCdEf"}}, headers)
