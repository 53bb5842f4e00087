"""The pieces of the latency and scale-out benchmarks, run cheaply: the delaying proxy (forwards bytes
intact, adds at least its delay, counts HTTP requests, stops by itself), the end-to-end clocks (inbox
`created_at` → the commit log line, else `applied_at`), the capacity window, and the new targets."""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path
from typing import Any, cast

from rich.console import Console

from bench.core import QUICK, Run
from bench.latency import applied_rate, commit_times, end_to_end_ms
from bench.proxy import DelayProxy, RequestCounter
from bench.report import add_derived, evaluate
from store import Database


async def _echo_server() -> asyncio.Server:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65_536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(echo, "127.0.0.1", 0)


def _request(body: bytes) -> bytes:
    return b"POST /batch HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


async def test_proxy_forwards_bytes_intact_after_its_delay_each_way_and_counts_requests() -> None:
    server = await _echo_server()
    body = bytes(range(256)) * 400  # 100 kB: several chunks, and "\r\n\r\n"-free binary content
    wire = _request(body) + _request(b"{}")
    async with server, DelayProxy(server.sockets[0].getsockname()[1], 0.05, lifetime_s=30) as proxy:
        streams = [await asyncio.open_connection("127.0.0.1", proxy.port) for _ in range(2)]
        began = time.monotonic()
        for _, writer in streams:  # interleaved on two connections: each keeps its own framing
            writer.write(wire[:70_000])
        for _, writer in streams:
            writer.write(wire[70_000:])
        echoed = [await asyncio.wait_for(reader.readexactly(len(wire)), 10) for reader, _ in streams]
        elapsed = time.monotonic() - began
        for _, writer in streams:
            writer.close()
            await writer.wait_closed()
    assert echoed == [wire, wire]
    assert elapsed >= 0.1  # 50 ms there and 50 ms back, at least
    assert proxy.requests == 4
    assert proxy.connections == 2


async def test_proxy_refuses_connections_beyond_its_limit_and_stops_by_itself() -> None:
    server = await _echo_server()
    async with server:
        proxy = await DelayProxy(server.sockets[0].getsockname()[1], 0.0, max_connections=1, lifetime_s=0.5).start()
        try:
            first_r, first_w = await asyncio.open_connection("127.0.0.1", proxy.port)
            first_w.write(b"ping")
            assert await asyncio.wait_for(first_r.readexactly(4), 10) == b"ping"
            second_r, second_w = await asyncio.open_connection("127.0.0.1", proxy.port)
            assert await asyncio.wait_for(second_r.read(10), 10) == b""  # refused: closed at once
            assert await asyncio.wait_for(first_r.read(10), 10) == b""  # its lifetime over: closed
            assert proxy.refused == 1
            for writer in (first_w, second_w):
                writer.close()
                await writer.wait_closed()
        finally:
            await proxy.stop()


def test_request_counter_follows_content_length_across_arbitrary_pieces() -> None:
    counter = RequestCounter()
    wire = _request(b"a\r\n\r\nb" * 10) + _request(b"") + _request(b"x" * 3)
    for i in range(0, len(wire), 7):
        counter.feed(wire[i:i + 7])
    assert (counter.requests, counter.unframed) == (3, 0)


def test_commit_times_read_the_event_applied_lines_of_worker_logs(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text("\n".join([
        json.dumps({"event": "event_applied", "event_id": "evt_1", "timestamp": "2026-11-29T10:00:00.250000Z"}),
        json.dumps({"event": "job_started", "event_id": "evt_2", "timestamp": "2026-11-29T10:00:00Z"}),
        "not json at all \"event_applied\"",
    ]) + "\n")
    times = commit_times([log, tmp_path / "missing.log"])
    assert list(times) == ["evt_1"]
    assert times["evt_1"] % 1000 == 250


class _Inbox:
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    async def query(self, sql: str, params: list[Any]) -> list[dict[str, Any]]:
        if "GROUP BY" in sql:
            return [{"status": "applied", "n": len(self.rows)}]
        return [r for r in self.rows if r["created_at"] >= params[0]]


async def test_end_to_end_ends_at_the_commit_line_else_at_applied_at() -> None:
    inbox = _Inbox([{"id": "evt_1", "created_at": 1000, "applied_at": 1004},
                    {"id": "evt_2", "created_at": 2000, "applied_at": 2010},
                    {"id": "evt_3", "created_at": 500, "applied_at": 501}])
    lat = await end_to_end_ms(cast(Database, inbox), {"evt_1": 1007.5}, created_after_ms=900)
    assert sorted(lat.ms) == [7.5, 10.0]
    assert lat.from_log == 1
    assert lat.summary()["max_ms"] == 10.0
    # split where the commit line is known: 4 ms before the unit of work began, 3.5 ms in it
    assert (lat.waits, lat.units) == ([4.0], [3.5])


def test_capacity_counts_applied_events_while_webhooks_kept_arriving() -> None:
    created = list(range(0, 5000, 5))  # 200/s for 5 s
    applied = [c + 100 for c in created[::2]]  # half of them applied, 100 ms later
    per_s, accepted = applied_rate(created, applied)
    assert round(accepted) == 200
    assert round(per_s) == 100


def test_latency_and_distance_targets_report_pass_and_miss() -> None:
    run = Run(quick=True, workdir=Path("/nonexistent"), redis_url="redis://unused",
              console=Console(file=io.StringIO()), sizes=QUICK)
    run.record("latency.50pct.p99_ms", "p99", 20.0, "ms")
    run.record("scaleout.d1.25ms_vs_0ms.1w", "ratio", 0.4, "x")
    run.record("scaleout.d1.requests_per_event_max", "req", 1.0, "req/event")
    add_derived(run)
    verdicts = {t["figure"]: t for t in evaluate(run)}
    assert (verdicts["latency.50pct.p99_ms"]["verdict"], verdicts["latency.50pct.p99_ms"]["margin"]) == ("PASS", 0.2)
    assert verdicts["scaleout.d1.25ms_vs_0ms.1w"]["verdict"] == "MISS"
    assert verdicts["scaleout.d1.requests_per_event_max"]["verdict"] == "PASS"
