"""End-to-end latency at fixed fractions of the *pipeline's* capacity (the ingress and one worker together).

1. capacity: signed webhooks offered closed-loop (the ingress saturated) while one worker applies them;
   capacity = events applied per second while webhooks kept arriving (see `applied_rate`);
2. open-loop fixed rates of 25 %, 50 % and 75 % of that capacity, and 100/s, each for a bounded time on
   a fresh copy of the database; per event, received → committed (see `end_to_end_ms`), p50/p99/max.

Both clocks come from the product: the inbox row's `created_at` (ms, stamped by the ingress's Publisher
when it records the webhook) and the worker's `event_applied` log line (ISO timestamp to the µs, written
right after the event's batch committed); `applied_at` (ms, stamped when the unit of work began) stands in
for an event with no such line.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench.apply import WORKER, require_payments
from bench.core import Run, percentile
from bench.ingress import CONNECTIONS, INGRESS, _loadgen, _require_ingress, _template, _wait_healthy
from bench.payments_data import write_webhooks
from bench.procs import drain_time, peak_rss_mb, pipeline_env, process
from store import Database
from store.sqlite import SqliteDatabase

PLANNED_PER_SECOND = 2_000  # webhooks prepared per second of each phase (saturation here is well below)
FRACTIONS = (25, 50, 75)
FIXED_RATE = 100.0


def commit_times(logs: Iterable[Path]) -> dict[str, float]:
    """event id → epoch ms of its `event_applied` log line (written after its batch committed)."""
    out: dict[str, float] = {}
    for path in logs:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            if '"event_applied"' not in line:
                continue
            try:
                item = json.loads(line)
                moment = datetime.fromisoformat(str(item["timestamp"]).replace("Z", "+00:00"))
                out[str(item["event_id"])] = moment.timestamp() * 1000
            except (ValueError, KeyError, TypeError):
                continue
    return out


@dataclass(frozen=True)
class Latencies:
    ms: list[float]
    from_log: int  # how many end at the commit log line (the rest at applied_at)
    statuses: dict[str, int]

    def summary(self) -> dict[str, float | None]:
        return {"p50_ms": percentile(self.ms, 50), "p99_ms": percentile(self.ms, 99),
                "max_ms": max(self.ms) if self.ms else None, "events": float(len(self.ms))}


async def end_to_end_ms(db: Database, commits: dict[str, float], *, created_after_ms: float = 0) -> Latencies:
    """created_at → commit log line (or applied_at) of every applied event created after `created_after_ms`."""
    rows = await db.query("SELECT id, created_at, applied_at FROM event_inbox WHERE status = 'applied'"
                          " AND created_at >= ?", [int(created_after_ms)])
    statuses = await db.query("SELECT status, count(*) AS n FROM event_inbox WHERE created_at >= ? GROUP BY status",
                              [int(created_after_ms)])
    values, from_log = [], 0
    for r in rows:
        committed = commits.get(str(r["id"]))
        from_log += committed is not None
        values.append((committed if committed is not None else float(r["applied_at"])) - float(r["created_at"]))
    return Latencies(values, from_log, {str(r["status"]): int(r["n"]) for r in statuses})


def applied_rate(created: list[int], applied: list[int], *, warmup_ms: int = 1000) -> tuple[float, float]:
    """(applied/s, accepted/s) over the window in which webhooks kept arriving, after a warm-up:
    [first created_at + warm-up, last created_at]. Applied < accepted: the queue grew."""
    if not created:
        return 0.0, 0.0
    start, end = min(created) + warmup_ms, max(created)
    if end <= start:
        start = min(created)
    span = max(1, end - start) / 1000
    return (sum(start <= a <= end for a in applied) / span, sum(start <= c <= end for c in created) / span)


async def _phase(run: Run, name: str, template: Path, webhooks: Path, *, key: str, mode: str, rate: float,
                 seconds: float, path: str) -> tuple[dict[str, Any], Path, list[Path]]:
    from tests.support.redis_server import free_port  # noqa: PLC0415

    folder = run.subdir(f"latency-{name}")
    db_path = folder / "studiovault.db"
    shutil.copy(template, db_path)
    queue, port = f"bench:latency:{name}", free_port()
    env = pipeline_env(f"sqlite:///{db_path}", run.redis_url, queue,
                       SV_ACCOUNTS_ENCRYPTION_KEYS=json.dumps([key]), SV_INGRESS_PORT=str(port))
    logs = run.subdir("logs")
    worker_log = logs / f"worker-latency-{name}.log"
    with process([*INGRESS, "--port", str(port)], env, logs / f"ingress-latency-{name}.log") as ingress:
        _wait_healthy(port, ingress, logs / f"ingress-latency-{name}.log")
        with process(WORKER, env, worker_log) as worker:
            await asyncio.sleep(1.5)  # the worker's start-up (imports, connections) before the load
            result = await _loadgen(port, webhooks, mode, rate=rate, duration=seconds, path=path)
            redis = Redis.from_url(run.redis_url)
            try:
                await drain_time(redis, queue, 1 << 30, [worker], within=max(60.0, seconds * 10))
            finally:
                await redis.aclose()
            await asyncio.sleep(0.2)  # the last event_applied line reaches its file
            run.note_rss("worker", peak_rss_mb(worker.pid))
        run.note_rss("ingress", peak_rss_mb(ingress.pid))
    return result, db_path, [worker_log]


async def run_latency(run: Run) -> None:
    require_payments()
    _require_ingress()
    from gateways.secretbox import new_key  # noqa: PLC0415

    seconds = run.sizes.latency_seconds
    secret, key = secrets.token_hex(16), new_key()
    count = int(PLANNED_PER_SECOND * seconds)
    run.log(f"latency: seeding {count} invoices and signing {count} payment.captured webhooks")
    template = await _template(run, count, secret, key, folder="latency")
    webhooks = run.subdir("latency") / "webhooks.jsonl"
    write_webhooks(str(webhooks), run.extra.pop("_ingress_refs"), 118_000, secret)
    hook_path = run.extra["_ingress_path"]
    details: dict[str, Any] = run.extra.setdefault("latency", {})

    run.log(f"latency: pipeline capacity — ingress saturated ({CONNECTIONS} connections) + one worker, {seconds:.0f} s")
    sat, db_path, _ = await _phase(run, "capacity", template, webhooks, key=key, mode="saturate", rate=0,
                                   seconds=seconds, path=hook_path)
    db = await SqliteDatabase.open(db_path)
    try:
        rows = await db.query("SELECT created_at, applied_at FROM event_inbox")
    finally:
        await db.close()
    created = [int(r["created_at"]) for r in rows]
    applied = [int(r["applied_at"]) for r in rows if r["applied_at"] is not None]
    capacity, accepted = applied_rate(created, applied)
    details["capacity"] = {"loadgen": sat, "applied_per_s": capacity, "accepted_per_s": accepted}
    run.record("latency.capacity", "pipeline capacity: applied/s, ingress saturated + 1 worker (SQLite)", capacity,
               "events/s", f"accepted {accepted:,.0f}/s meanwhile: the queue grew at {accepted - capacity:,.0f}/s")
    if capacity <= 0:
        raise RuntimeError(f"no event applied while the ingress was saturated: {sat}")

    for label, rate in [*((f"{p}pct", capacity * p / 100) for p in FRACTIONS), ("100rps", FIXED_RATE)]:
        run.log(f"latency: {rate:,.0f}/s offered open-loop for {seconds:.0f} s ({label}), one worker")
        fixed, db_path, logs = await _phase(run, label, template, webhooks, key=key, mode="fixed", rate=rate,
                                            seconds=seconds, path=hook_path)
        db = await SqliteDatabase.open(db_path)
        try:
            lat = await end_to_end_ms(db, commit_times(logs), created_after_ms=0)
        finally:
            await db.close()
        figures = lat.summary()
        details[label] = {"rate": rate, "loadgen": fixed, "inbox": lat.statuses, "ended_at_commit_log": lat.from_log,
                          **figures}
        where = "100/s" if label == "100rps" else f"{label[:-3]} % of capacity ({rate:,.0f}/s)"
        clock = "commit log line" if lat.from_log == len(lat.ms) else f"commit log for {lat.from_log}, else applied_at"
        note = f"{len(lat.ms)} events; created_at → {clock}; ingress p99 {fixed['p99_ms']} ms"
        run.record(f"latency.{label}.p50_ms", f"end to end at {where}: p50", figures["p50_ms"], "ms", note)
        run.record(f"latency.{label}.p99_ms", f"end to end at {where}: p99", figures["p99_ms"], "ms")
        run.record(f"latency.{label}.max_ms", f"end to end at {where}: max", figures["max_ms"], "ms")
