"""Apply throughput: pre-published payment-captured events drained by `studiovault worker` processes.

Each run: a fresh migrated SQLite file, invoices seeded, N events published with the Publisher (inbox
row, then enqueue), then 1 or 2 worker subprocesses start and the queue is timed from the first
finished job to empty (start-up excluded). The inbox is then checked: every event applied, none left.
"""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from bench.core import NotAvailable, Run
from bench.payments_data import InvoiceRef, captured_envelope, seed_invoices
from bench.procs import PYTHON, Drain, drain_time, log_tail, peak_rss_mb, pipeline_env, process
from bench.profile import profile_worker
from events.envelope import Envelope
from events.publish import Publisher
from jobqueue.arq_redis import ArqQueue, connect
from store.errors import TransientError
from store.migrate import migrate
from store.sqlite import SqliteDatabase

WORKER = [PYTHON, "-m", "cli", "worker"]
ARQ_DEFAULTS = {"SV_POLL_DELAY": "0.5", "SV_MAX_JOBS": "10"}
HOT_CAPTURE_MINOR = 10_000  # ₹100 each: 50 partial captures of a ₹5,000 invoice


def require_payments() -> None:
    try:
        import handlers.payments  # noqa: F401, PLC0415
    except ImportError as exc:
        raise NotAvailable(f"the payment handlers are not importable: {exc}") from exc


@dataclass(frozen=True)
class Outcome:
    drain: Drain
    statuses: dict[str, int]
    worker_rss_mb: list[float]
    dead_errors: list[str]


async def publish_all(db: SqliteDatabase, redis_url: str, queue: str, refs: list[InvoiceRef], amount_minor: int,
                      *, concurrency: int = 50) -> None:
    pool = await connect(redis_url, queue)
    publisher = Publisher(db, ArqQueue(pool, queue))

    async def publish(envelope: Envelope) -> None:
        # The same envelope again after a transient failure (on D1, a keep-alive connection the bridge
        # had just closed: "it may have committed"): a duplicate of a committed one is acknowledged.
        for attempt in range(3):
            try:
                await publisher.publish(envelope)
            except TransientError:
                if attempt == 2:
                    raise
                await asyncio.sleep(0.1)
            else:
                return

    try:
        for start in range(0, len(refs), concurrency):
            await asyncio.gather(*(publish(captured_envelope(ref, amount_minor))
                                   for ref in refs[start:start + concurrency]))
    finally:
        await pool.aclose()


async def prepare(run: Run, name: str, events: int, hot: bool) -> tuple[Path, str]:
    """A migrated file with the invoices, and `events` published events on queue `bench:apply:<name>`."""
    path = run.subdir(f"apply-{name}") / "studiovault.db"
    db = await SqliteDatabase.open(path)
    queue = f"bench:apply:{name}"
    try:
        await migrate(db)
        if hot:
            (ref,) = await seed_invoices(db, 1, amount_total=events * HOT_CAPTURE_MINOR / 100)
            refs, amount = [ref] * events, HOT_CAPTURE_MINOR
        else:
            refs, amount = await seed_invoices(db, events), 118_000
        await publish_all(db, run.redis_url, queue, refs, amount)
    finally:
        await db.close()
    return path, queue


async def drain_with_workers(run: Run, name: str, path: Path, queue: str, *, events: int, workers: int,
                             env_extra: dict[str, str] | None = None, profile_seconds: float = 0) -> Outcome:
    env = pipeline_env(f"sqlite:///{path}", run.redis_url, queue, **(env_extra or {}))
    logs = run.subdir("logs")
    redis = Redis.from_url(run.redis_url)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with WorkerGroup(env, logs, name, workers) as procs:
            profiler = asyncio.create_task(
                profile_worker(run, procs[0].pid, profile_seconds, redis_url=run.redis_url, queue=queue, total=events)
            ) if profile_seconds else None
            try:
                drain = await drain_time(redis, queue, events, procs, within=max(120.0, events / 20))
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"{exc}\n{log_tail(logs / f'worker-{name}-0.log')}") from exc
            if profiler is not None:
                await profiler
            rss = [m for m in (peak_rss_mb(p.pid) for p in procs) if m is not None]
    finally:
        await redis.aclose()
    db = await SqliteDatabase.open(path)
    try:
        rows = await db.query("SELECT status, count(*) AS n FROM event_inbox GROUP BY status")
        errors = await db.query("SELECT DISTINCT last_error FROM event_inbox WHERE status = 'dead' LIMIT 3")
    finally:
        await db.close()
    return Outcome(drain, {str(r["status"]): int(r["n"]) for r in rows}, rss, [str(r["last_error"]) for r in errors])


class WorkerGroup:
    """Start `count` worker processes (context manager yielding their Popen objects)."""

    def __init__(self, env: dict[str, str], logs: Path, name: str, count: int) -> None:
        self._managers = [process(WORKER, env, logs / f"worker-{name}-{i}.log") for i in range(count)]

    def __enter__(self) -> list[subprocess.Popen[bytes]]:
        return [m.__enter__() for m in self._managers]

    def __exit__(self, *exc: object) -> None:
        for manager in reversed(self._managers):
            manager.__exit__(None, None, None)


async def measure(run: Run, name: str, events: int, workers: int, *, env_extra: dict[str, str] | None = None,
                  hot: bool = False, profile_seconds: float = 0) -> Outcome:
    path, queue = await prepare(run, name, events, hot)
    outcome = await drain_with_workers(run, name, path, queue, events=events, workers=workers, env_extra=env_extra,
                                       profile_seconds=profile_seconds)
    for mb in outcome.worker_rss_mb:
        run.note_rss("worker", mb)
    applied = outcome.statuses.get("applied", 0)
    if applied != events or outcome.statuses.get("pending"):
        problem = f"only {applied} of {events} applied ({outcome.statuses}); dead because: {outcome.dead_errors}"
        run.log(f"  [red]{name}: {problem}[/red]")
        run.extra.setdefault("problems", {})[f"apply.{name}"] = problem
    run.extra.setdefault("apply_runs", {})[name] = {
        "events": events, "workers": workers, "timed_events": outcome.drain.depth_at_start,
        "seconds": round(outcome.drain.seconds, 3), "startup_s": round(outcome.drain.waited_for_start, 3),
        "inbox": outcome.statuses, "worker_peak_rss_mb": outcome.worker_rss_mb, "env": env_extra or {},
    }
    return outcome


def _record(run: Run, key: str, label: str, out: Outcome, events: int, *, note: str = "") -> None:
    """events/s, or n/a when not every event was applied (a dead-lettered event is not throughput)."""
    applied = out.statuses.get("applied", 0)
    if applied == events:
        run.record(key, label, out.drain.per_second, "events/s", note)
    else:
        run.record(key, label, None, "events/s", f"INVALID: {events - applied} of {events} not applied, "
                   f"e.g. {out.dead_errors[:1]}")


async def run_apply(run: Run) -> None:
    require_payments()
    n, n_default, hot = run.sizes.apply_events, run.sizes.apply_events_default, run.sizes.hot_events
    for workers in (1, 2):
        run.log(f"apply: {n} payment.captured events, one invoice each, {workers} worker process(es), SQLite")
        out = await measure(run, f"{workers}w", n, workers)
        _record(run, f"apply.sqlite.{workers}w", f"apply, {workers} worker(s), SQLite", out, n)
    run.log(f"apply: {n_default} events, 1 worker on arq's defaults (SV_POLL_DELAY=0.5 SV_MAX_JOBS=10)")
    out = await measure(run, "1w-arq-default", n_default, 1, env_extra=ARQ_DEFAULTS)
    _record(run, "apply.sqlite.1w_arq_default", "apply, 1 worker, arq default settings", out, n_default)
    for workers in (1, 2):
        run.log(f"apply: hot invoice, {hot} partial captures of ONE invoice, {workers} worker process(es)")
        out = await measure(run, f"hot-{workers}w", hot, workers, hot=True)
        _record(run, f"apply.sqlite.hot_{workers}w", f"apply, hot invoice ({hot} on one), {workers} worker(s)", out,
                hot, note=f"drained in {out.drain.seconds * 1000:.0f} ms")
    if run.profile:
        run.log(f"apply: profiling one worker with py-spy ({n} events; figures above are unprofiled)")
        await measure(run, "profiled", n, 1, profile_seconds=5.0 if run.quick else 8.0)
