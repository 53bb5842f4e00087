"""A latency-injecting TCP proxy on loopback: D1 "at a distance" without leaving the machine.

    async with DelayProxy(upstream_port, delay_s=0.025) as proxy:   # 25 ms each way: 50 ms RTT
        ...connect to 127.0.0.1:proxy.port...
    proxy.requests  # HTTP/1.1 requests the clients sent through it

Every chunk read from one side is written to the other side `delay_s` after it was read (a propagation
delay per direction, not a bandwidth limit: chunks in flight do not wait for one another, and order is
kept). It counts the HTTP/1.1 requests flowing client → server on each connection by their framing (a request head, then
`Content-Length` bytes of body), which is how `D1BridgeDatabase` talks to the bridge (httpx, no chunked
request bodies) — so several worker *processes* can be counted in one place.

Bounded: at most `max_connections` at once (more are refused), and it stops by itself — closing every
connection — `lifetime_s` after it started, whatever its user does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from types import TracebackType
from typing import Any

CHUNK = 65_536


class RequestCounter:
    """Counts HTTP/1.1 requests in a byte stream fed in arbitrary pieces (Content-Length bodies only)."""

    def __init__(self) -> None:
        self.requests = 0
        self.unframed = 0  # requests whose body length could not be told (chunked): counted, framing lost
        self._buffer = b""
        self._body_left = 0

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while self._buffer:
            if self._body_left:
                taken = min(self._body_left, len(self._buffer))
                self._body_left -= taken
                self._buffer = self._buffer[taken:]
                continue
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self._buffer = self._buffer[:end].decode("latin-1"), self._buffer[end + 4:]
            self.requests += 1
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    self._body_left = int(value.strip())
                elif name.strip().lower() == "transfer-encoding" and "chunked" in value.lower():
                    self.unframed += 1


class DelayProxy:
    """127.0.0.1:<port> → 127.0.0.1:<upstream_port>, `delay_s` added in each direction."""

    def __init__(self, upstream_port: int, delay_s: float, *, max_connections: int = 64,
                 lifetime_s: float = 600.0) -> None:
        self.upstream_port, self.delay_s = upstream_port, delay_s
        self.max_connections, self.lifetime_s = max_connections, lifetime_s
        self.counters: list[RequestCounter] = []  # one per connection: each has its own framing
        self.connections = 0
        self.refused = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._open = 0
        self._deadline: asyncio.TimerHandle | None = None

    @property
    def requests(self) -> int:
        return sum(c.requests for c in self.counters)

    async def start(self) -> DelayProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self._deadline = asyncio.get_running_loop().call_later(
            self.lifetime_s, lambda: self._spawn(self.stop()))
        return self

    async def stop(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        for task in list(self._tasks):
            if task is not current:
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await task

    async def __aenter__(self) -> DelayProxy:
        return await self.start()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self._open >= self.max_connections:
            self.refused += 1
            client_w.close()
            return
        self._open += 1
        self.connections += 1
        try:
            upstream_r, upstream_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            self._open -= 1
            client_w.close()
            return
        self._writers.update((client_w, upstream_w))
        counter = RequestCounter()
        self.counters.append(counter)
        up = asyncio.ensure_future(self._pipe(client_r, upstream_w, counter))
        down = asyncio.ensure_future(self._pipe(upstream_r, client_w, None))
        try:
            await asyncio.gather(up, down)
        finally:
            up.cancel()
            down.cancel()
            for writer in (client_w, upstream_w):
                writer.close()
                self._writers.discard(writer)
            self._open -= 1

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    counter: RequestCounter | None) -> None:
        """Read chunks as they come; deliver each `delay_s` after it was read, in order."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        sender = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(CHUNK)
                if counter is not None and data:
                    counter.feed(data)
                queue.put_nowait((time.monotonic() + self.delay_s, data))
                if not data:
                    break
            await sender
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sender.cancel()
