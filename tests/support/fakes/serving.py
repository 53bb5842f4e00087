"""What the fake gateway APIs share: a loopback server thread, scripted faults and a request log.

Each fake is a starlette app served by uvicorn on 127.0.0.1 from a background thread with its own event
loop, so the code under test may call it from sync code, from async code on the test's loop, or from a
worker subprocess. The listening socket is bound before the thread starts (port 0): no free-port race.

State is shared between the test thread and the server thread, so every read and write goes through
`FakeApi.lock`. Only the standard library, starlette and uvicorn are imported: nothing from the project.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

HTML_502 = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
            "</center>\r\n</body>\r\n</html>\r\n")


@dataclass(frozen=True)
class Fault:
    """One scripted answer. `status=None` answers normally, after `delay_s` (a slow gateway)."""

    status: int | None
    body: Any = None  # JSON-able body; ignored when `text` is set
    text: str | None = None  # a raw, non-JSON body (an edge proxy's HTML 502)
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True)
class Recorded:
    """One request the fake answered."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    headers: Mapping[str, str]  # lower-cased names
    status: int
    account: str | None  # the account the request was resolved to, when auth succeeded


class FakeApi:
    """Scripted faults (FIFO) and the request log; subclasses add the gateway's routes and data."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._faults: deque[Fault] = deque()
        self._requests: list[Recorded] = []

    # ---- scripting, from the test ---------------------------------------------------------------------

    def default_fault(self, status: int) -> Fault:
        """The gateway's own error answer for `status` (subclasses override)."""
        return Fault(status, {"error": f"HTTP {status}"})

    def fail_next(self, n: int = 1, status: int = 429, *, body: Any = None, text: str | None = None,
                  headers: Mapping[str, str] | None = None, delay_s: float = 0.0) -> None:
        """Answer the next `n` requests with `status` (the gateway's own error body unless one is given)."""
        fault = self.default_fault(status)
        if body is not None or text is not None:
            fault = Fault(status, body, text, fault.headers)
        if headers is not None:
            fault = Fault(status, fault.body, fault.text, headers)
        fault = Fault(fault.status, fault.body, fault.text, fault.headers, delay_s)
        with self.lock:
            self._faults.extend([fault] * n)

    def slow_next(self, n: int, delay_s: float) -> None:
        """Answer the next `n` requests normally, but only after `delay_s` seconds."""
        with self.lock:
            self._faults.extend([Fault(None, delay_s=delay_s)] * n)

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    # ---- assertions, from the test ----------------------------------------------------------------------

    @property
    def requests(self) -> list[Recorded]:
        with self.lock:
            return list(self._requests)

    def count(self, path: str | None = None, status: int | None = None) -> int:
        """Requests answered so far, optionally only those to `path` and/or answered with `status`."""
        with self.lock:
            return sum(1 for r in self._requests
                       if (path is None or r.path == path) and (status is None or r.status == status))

    def reset_requests(self) -> None:
        with self.lock:
            self._requests.clear()

    # ---- for the subclasses' handlers ---------------------------------------------------------------------

    def take_fault(self) -> Fault | None:
        with self.lock:
            return self._faults.popleft() if self._faults else None

    def record(self, request: Request, status: int, account: str | None) -> None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        entry = Recorded(request.method, request.url.path, tuple(request.query_params.multi_items()), headers,
                         status, account)
        with self.lock:
            self._requests.append(entry)


def fault_response(fault: Fault) -> Response:
    assert fault.status is not None
    if fault.text is not None:
        return Response(fault.text, status_code=fault.status, headers=dict(fault.headers), media_type="text/html")
    return JSONResponse(fault.body, status_code=fault.status, headers=dict(fault.headers))


class _Server:
    def __init__(self, app: Starlette, name: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="none", http="h11", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, name=name,
                                       daemon=True)
        self.deadline = time.monotonic() + 10

    def wait_started(self) -> None:
        while not self.server.started:
            if time.monotonic() > self.deadline or not self.thread.is_alive():
                self.stop_nowait()
                raise RuntimeError("the fake gateway server did not start")
            time.sleep(0.01)

    def stop_nowait(self) -> None:
        self.server.should_exit = True

    def close(self) -> None:
        self.sock.close()


@contextmanager
def serving(app: Starlette, name: str = "fake-gateway") -> Iterator[str]:
    """Serve `app` on a loopback port from a background thread; yield its base URL (blocking start/stop)."""
    server = _Server(app, name)
    server.thread.start()
    try:
        server.wait_started()
        yield server.url
    finally:
        server.stop_nowait()
        server.thread.join(timeout=10)
        server.close()


@asynccontextmanager
async def serving_async(app: Starlette, name: str = "fake-gateway") -> AsyncIterator[str]:
    """As `serving`, without blocking the caller's event loop while the server starts and stops."""
    server = _Server(app, name)
    server.thread.start()
    try:
        await asyncio.to_thread(server.wait_started)
        yield server.url
    finally:
        server.stop_nowait()
        await asyncio.to_thread(server.thread.join, 10)
        server.close()
