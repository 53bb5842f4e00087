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

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.apply import require_payments
from bench.core import Run, percentile
from bench.ingress import CONNECTIONS, _require_ingress, run_phase, signed_webhooks
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
    # The two parts of `ms`, for the events that have a commit log line: created_at → applied_at (the
    # ingress's commit, the enqueue, the wait for a poll, the claim), and applied_at → commit (the unit).
    waits: list[float] = field(default_factory=list)
    units: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float | None]:
        return {"p50_ms": percentile(self.ms, 50), "p99_ms": percentile(self.ms, 99),
                "max_ms": max(self.ms) if self.ms else None, "events": float(len(self.ms)),
                "before_unit_p50_ms": percentile(self.waits, 50), "before_unit_p99_ms": percentile(self.waits, 99),
                "unit_p50_ms": percentile(self.units, 50), "unit_p99_ms": percentile(self.units, 99)}


async def end_to_end_ms(db: Database, commits: dict[str, float], *, created_after_ms: float = 0) -> Latencies:
    """created_at → commit log line (or applied_at) of every applied event created after `created_after_ms`."""
    rows = await db.query("SELECT id, created_at, applied_at FROM event_inbox WHERE status = 'applied'"
                          " AND created_at >= ?", [int(created_after_ms)])
    statuses = await db.query("SELECT status, count(*) AS n FROM event_inbox WHERE created_at >= ? GROUP BY status",
                              [int(created_after_ms)])
    values, waits, units = [], [], []
    for r in rows:
        created, began = float(r["created_at"]), float(r["applied_at"])
        committed = commits.get(str(r["id"]))
        values.append((committed if committed is not None else began) - created)
        if committed is not None:
            waits.append(began - created)
            units.append(committed - began)
    return Latencies(values, len(units), {str(r["status"]): int(r["n"]) for r in statuses}, waits, units)


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


async def run_latency(run: Run) -> None:
    require_payments()
    _require_ingress()
    seconds = run.sizes.latency_seconds
    hooks = await signed_webhooks(run, "latency", int(PLANNED_PER_SECOND * seconds))
    details: dict[str, Any] = run.extra.setdefault("latency", {})

    run.log(f"latency: pipeline capacity — ingress saturated ({CONNECTIONS} connections) + one worker, {seconds:.0f} s")
    capacity_phase = await run_phase(run, "latency", "capacity", hooks, mode="saturate", rate=0, seconds=seconds,
                                     with_worker=True)
    sat = capacity_phase.result
    db = await SqliteDatabase.open(capacity_phase.db_path)
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
        phase = await run_phase(run, "latency", label, hooks, mode="fixed", rate=rate, seconds=seconds,
                                with_worker=True)
        fixed = phase.result
        db = await SqliteDatabase.open(phase.db_path)
        try:
            lat = await end_to_end_ms(db, commit_times([phase.worker_log]), created_after_ms=0)
        finally:
            await db.close()
        figures = lat.summary()
        details[label] = {"rate": rate, "loadgen": fixed, "inbox": lat.statuses, "ended_at_commit_log": lat.from_log,
                          **figures}
        where = "100/s" if label == "100rps" else f"{label[:-3]} % of capacity ({rate:,.0f}/s)"
        clock = "commit log line" if lat.from_log == len(lat.ms) else f"commit log for {lat.from_log}, else applied_at"
        note = (f"{len(lat.ms)} events; created_at → {clock}; ingress p99 {fixed['p99_ms']} ms; p99 before the "
                f"unit of work began {figures['before_unit_p99_ms']} ms, of the unit {figures['unit_p99_ms']} ms")
        run.record(f"latency.{label}.p50_ms", f"end to end at {where}: p50", figures["p50_ms"], "ms", note)
        run.record(f"latency.{label}.p99_ms", f"end to end at {where}: p99", figures["p99_ms"], "ms")
        run.record(f"latency.{label}.max_ms", f"end to end at {where}: max", figures["max_ms"], "ms")
