"""Billing: close one period for N orgs, each with media rows and notifications, through the workers.

For each size: a migrated SQLite file bulk-seeded (`tests/support/billing_seed.py`), two worker
processes started (and given time to start), then the clock runs from the first close published (the
same producer as `studiovault billing close --period P`) until every close is applied. Growth is the
per-org time at the largest size over the per-org time at the smallest (1.0 = linear).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

from redis.asyncio import Redis

from bench.apply import WorkerGroup
from bench.core import NotAvailable, Run
from bench.procs import drain_time, log_tail, peak_rss_mb, pipeline_env
from events.publish import Publisher
from jobqueue.arq_redis import ArqQueue, connect
from store.migrate import migrate
from store.sqlite import SqliteDatabase

PERIOD = "2026-10"
WORKERS = 2
CLOSE_LIMIT_S = 300.0  # keeps the full run bounded; a close that needs longer is reported as >= this


def _require_billing() -> None:
    try:
        import handlers.billing  # noqa: F401, PLC0415
        import producers.billing_close  # noqa: F401, PLC0415
        import tests.support.billing_seed  # noqa: F401, PLC0415
    except ImportError as exc:
        raise NotAvailable(f"billing (handlers/billing/, producers/billing_close.py, "
                           f"tests/support/billing_seed.py) is not importable: {exc}") from exc


async def _seed(run: Run, orgs: int) -> Path:
    from tests.support.billing_seed import SeedSpec, seed_sqlite_file  # noqa: PLC0415

    path = run.subdir(f"billing-{orgs}") / "studiovault.db"
    db = await SqliteDatabase.open(path)
    try:
        await migrate(db)
    finally:
        await db.close()
    spec = SeedSpec(orgs=orgs, media=orgs * run.sizes.billing_media_per_org,
                    notifications=orgs * run.sizes.billing_notifications_per_org, period=PERIOD)
    await asyncio.to_thread(seed_sqlite_file, path, spec, analyze=True)
    return path


async def close_period(run: Run, orgs: int) -> float:
    """Seconds from the first close published to the last applied, for `orgs` orgs."""
    from producers.billing_close import publish_period_closes  # noqa: PLC0415

    run.log(f"billing: seeding {orgs:,} orgs, {orgs * run.sizes.billing_media_per_org:,} media, "
            f"{orgs * run.sizes.billing_notifications_per_org:,} notifications")
    started = time.monotonic()
    path = await _seed(run, orgs)
    run.log(f"  seeded in {time.monotonic() - started:.1f} s; closing {PERIOD} with {WORKERS} workers")
    queue = f"bench:billing:{orgs}"
    env = pipeline_env(f"sqlite:///{path}", run.redis_url, queue)
    logs = run.subdir("logs")
    redis = Redis.from_url(run.redis_url)
    pool = await connect(run.redis_url, queue)
    db = await SqliteDatabase.open(path)
    try:
        with WorkerGroup(env, logs, f"billing-{orgs}", WORKERS) as procs:
            await asyncio.sleep(2.0)  # start-up (imports, connections) is not part of the close
            began = time.monotonic()
            result = await publish_period_closes(db, Publisher(db, ArqQueue(pool, queue)), datetime.now(UTC),
                                                 period=PERIOD)
            try:
                await drain_time(redis, queue, 1 << 30, procs, within=CLOSE_LIMIT_S)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}\n{log_tail(logs / f'worker-billing-{orgs}-0.log')}") from exc
            except TimeoutError:
                run.extra.setdefault("problems", {})[f"billing.{orgs}"] = f"stopped after {CLOSE_LIMIT_S} s"
                run.log(f"  [red]not finished after {CLOSE_LIMIT_S} s: stopped (the figure is a lower bound)[/red]")
            seconds = time.monotonic() - began
            for proc in procs:
                run.note_rss("worker", peak_rss_mb(proc.pid))
        statuses = {str(r["status"]): int(r["n"]) for r in
                    await db.query("SELECT status, count(*) AS n FROM event_inbox GROUP BY status")}
        errors = [str(r["e"]) for r in await db.query(
            "SELECT DISTINCT last_error AS e FROM event_inbox WHERE status = 'dead' LIMIT 2")]
    finally:
        await db.close()
        await pool.aclose()
        await redis.aclose()
    run.extra.setdefault("billing_runs", {})[str(orgs)] = {
        "orgs": orgs, "published": result.published, "seconds": round(seconds, 2), "inbox": statuses}
    if statuses.get("applied", 0) != orgs:
        problem = f"{orgs} closes published, inbox: {statuses}, dead because: {errors}"
        run.extra.setdefault("problems", {})[f"billing.{orgs}"] = problem
        run.log(f"  [red]only {statuses.get('applied', 0)} of {orgs} closes applied: {statuses} {errors}[/red]")
    return seconds


async def run_billing(run: Run) -> None:
    _require_billing()
    small, large = run.sizes.billing_orgs
    times = {}
    for orgs in (small, large):
        times[orgs] = await close_period(run, orgs)
        run.record(f"billing.close_{orgs}_orgs_s", f"billing: close {orgs:,} orgs "
                   f"({orgs * run.sizes.billing_media_per_org:,} media)", times[orgs], "s",
                   f"{orgs / times[orgs]:,.0f} orgs/s, {WORKERS} workers")
    run.record("billing.per_org_growth", f"billing: per-org time at {large:,} / at {small:,} orgs",
               (times[large] / large) / (times[small] / small), "x", "1.0 = linear")
