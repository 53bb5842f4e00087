"""A small HTTP/1.1 load generator, run as its own process so it does not share the ingress's CPU time.

    python -m bench.loadgen --port P --requests webhooks.jsonl --mode fixed --rate 500 --duration 5
    python -m bench.loadgen --port P --requests webhooks.jsonl --mode saturate --duration 5 --connections 64

Requests are pre-built (one JSON line each: body and headers) and sent over keep-alive connections
with plain asyncio streams (lighter than an HTTP client library, so the ingress saturates first).
`fixed` is open-loop: request i is due at start + i/rate, and its latency counts from when it was due
(a late connection shows up as latency, not as a lower rate). `saturate` is closed-loop: each
connection sends its next request as soon as the previous one is answered. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any


def build_requests(path: Path, host: str, port: int, url_path: str) -> list[bytes]:
    out = []
    for line in path.read_text().splitlines():
        item = json.loads(line)
        body = item["body"].encode()
        head = [f"POST {url_path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in item["headers"].items()]
        out.append(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    return out


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def exchange(self, request: bytes) -> int:
        """Send one request, read its whole response; return the status code."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = next((int(v) for k, _, v in (ln.partition(":") for ln in lines[1:])
                       if k.strip().lower() == "content-length"), None)
        if length is None:
            raise RuntimeError(f"response without Content-Length: {lines[:6]}")
        await self.reader.readexactly(length)
        return status


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()

    def summary(self, seconds: float, sent: int) -> dict[str, Any]:
        ordered = sorted(self.latencies)

        def pct(q: float) -> float | None:
            if not ordered:
                return None
            return round(ordered[min(len(ordered) - 1, max(0, int(-(-q * len(ordered) // 100)) - 1))] * 1000, 3)

        ok = sum(n for code, n in self.statuses.items() if 200 <= code < 300)
        return {"sent": sent, "ok": ok, "seconds": round(seconds, 3), "ok_per_s": round(ok / seconds, 1),
                "statuses": {str(k): v for k, v in self.statuses.items()}, "errors": dict(self.errors),
                "p50_ms": pct(50), "p99_ms": pct(99), "max_ms": round(ordered[-1] * 1000, 3) if ordered else None}


async def _one(conn: Conn, request: bytes, due: float, stats: Stats, pool: asyncio.Queue[Conn]) -> None:
    try:
        status = await conn.exchange(request)
        stats.latencies.append(time.perf_counter() - due)
        stats.statuses[status] += 1
    except (OSError, asyncio.IncompleteReadError, ValueError, RuntimeError) as exc:
        stats.errors[type(exc).__name__] += 1
    finally:
        pool.put_nowait(conn)


async def fixed_rate(conns: list[Conn], requests: list[bytes], rate: float, duration: float) -> dict[str, Any]:
    pool: asyncio.Queue[Conn] = asyncio.Queue()
    for conn in conns:
        pool.put_nowait(conn)
    stats, tasks = Stats(), []
    total = min(len(requests), int(rate * duration))
    start = time.perf_counter()
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        conn = await pool.get()
        tasks.append(asyncio.create_task(_one(conn, requests[i], due, stats, pool)))
    await asyncio.gather(*tasks)
    return stats.summary(time.perf_counter() - start, total)


async def saturate(conns: list[Conn], requests: list[bytes], duration: float) -> dict[str, Any]:
    stats, cursor = Stats(), iter(range(len(requests)))
    start = time.perf_counter()
    stop_at = start + duration
    sent = 0

    async def loop(conn: Conn) -> None:
        nonlocal sent
        for i in cursor:
            if time.perf_counter() >= stop_at:
                return
            sent += 1
            began = time.perf_counter()
            try:
                status = await conn.exchange(requests[i])
            except (OSError, asyncio.IncompleteReadError, ValueError, RuntimeError) as exc:
                stats.errors[type(exc).__name__] += 1
                return
            stats.latencies.append(time.perf_counter() - began)
            stats.statuses[status] += 1

    await asyncio.gather(*(loop(c) for c in conns))
    return stats.summary(time.perf_counter() - start, sent)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    requests = build_requests(args.requests, args.host, args.port, args.path)
    conns = []
    for _ in range(args.connections):
        reader, writer = await asyncio.open_connection(args.host, args.port)
        conns.append(Conn(reader, writer))
    try:
        if args.mode == "fixed":
            return await fixed_rate(conns, requests, args.rate, args.duration)
        return await saturate(conns, requests, args.duration)
    finally:
        for conn in conns:
            conn.writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/webhooks/razorpay")
    parser.add_argument("--requests", type=Path, required=True, help="JSON lines: {body, headers}")
    parser.add_argument("--mode", choices=["fixed", "saturate"], required=True)
    parser.add_argument("--rate", type=float, default=500.0, help="requests/s (fixed mode)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds")
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("the load generator only targets loopback")
    print(json.dumps(asyncio.run(main_async(args))))


if __name__ == "__main__":
    main()
