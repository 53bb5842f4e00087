"""One engine's pickup measurement (see bench.pickup): a worker in this process, the app's events, the
Publisher baseline, then the same with 100,000 more rows in the inbox and the feed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import httpx
from redis.asyncio import Redis

from bench.core import Run
from bench.pickup import (
    Recorder,
    d1_app_writer,
    grow_inbox,
    outbox_phase,
    poll_query_ms,
    publisher_baseline,
    record_latencies,
    sqlite_app_writer,
)
from store import Database


async def _database(run: Run, engine: str, app_urls: Any, token: str | None,
                    migration_token: str | None) -> tuple[Database, str]:
    from store.migrate import migrate  # noqa: PLC0415

    if engine == "d1":
        from store.d1 import D1BridgeDatabase  # noqa: PLC0415

        # The bridge is least-privilege: schema changes only with the migration token, data with the other.
        async with D1BridgeDatabase(app_urls.bridge_url, migration_token or "", setting="D1_MIGRATION_TOKEN") as admin:
            await migrate(admin)
        return D1BridgeDatabase(app_urls.bridge_url, token or ""), f"d1+{app_urls.bridge_url}"
    from store.sqlite import SqliteDatabase  # noqa: PLC0415

    path = run.subdir("pickup-sqlite") / "studiovault.db"
    db = await SqliteDatabase.open(path)
    await migrate(db)
    return db, f"sqlite:///{path}"


async def _wait_for(condition: Any, within: float, what: str) -> float:
    started = time.monotonic()
    while not await condition():
        if time.monotonic() - started > within:
            raise TimeoutError(f"{what} after {within:.0f} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def measure_engine(run: Run, engine: str, providers_url: str, *, app_urls: Any = None,
                         token: str | None = None, migration_token: str | None = None) -> None:
    from bootstrap.worker import worker_settings  # noqa: PLC0415
    from config import Settings  # noqa: PLC0415
    from events.publish import Publisher  # noqa: PLC0415
    from jobqueue.arq_redis import ArqQueue, connect  # noqa: PLC0415
    from tests.support.factories import make_tenant  # noqa: PLC0415
    from tests.support.notify_harness import notify_fields  # noqa: PLC0415
    from workers.lifecycle import PipelineWorker, stop_worker  # noqa: PLC0415

    big, queue = run.sizes.pickup_inbox_rows, f"bench:pickup:{engine}"
    label = {"d1": "D1 outbox (app Worker, miniflare)", "sqlite": "SQLite outbox-style writer"}[engine]
    db, url = await _database(run, engine, app_urls, token, migration_token)
    tenant = await make_tenant(db, org_config={"notifications": {"quiet_hours": None}})
    settings = Settings.from_fields(database_url=url, d1_bridge_token=token, redis_url=run.redis_url,
                                    queue_name=queue, log_json=True, scheduled_jobs=False,
                                    **notify_fields(providers_url, notify_rate_per_minute=1_000_000))
    rec = Recorder()
    worker = PipelineWorker(**worker_settings(settings, customize=rec.wrap), handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    redis = Redis.from_url(run.redis_url)
    pool = await connect(run.redis_url, queue)
    http = httpx.AsyncClient(base_url=app_urls.app_url, timeout=10) if engine == "d1" else None
    details: dict[str, Any] = {"events_per_phase": run.sizes.pickup_events, "pace_s": 0.1, "inbox_rows_added": big}
    try:
        async def polled() -> bool:
            poller = worker.ctx.get("feed_poller")
            return poller is not None and poller.polls > 0

        await _wait_for(polled, 60, "the worker's feed poller never polled")
        write = d1_app_writer(http, tenant) if http is not None else sqlite_app_writer(db, tenant)
        publisher = Publisher(db, ArqQueue(pool, queue))
        details.update(await _phases(run, engine, db, redis, Phases(write, publisher, tenant, rec, label, queue)))
    finally:
        if http is not None:
            await http.aclose()
        await stop_worker(worker)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pool.aclose()
        await redis.aclose()
        await db.close()
    run.extra[f"pickup_{engine}"] = details


@dataclass(frozen=True)
class Phases:
    write: Any
    publisher: Any
    tenant: Any
    rec: Recorder
    label: str
    queue: str


async def _phases(run: Run, engine: str, db: Database, redis: Redis, p: Phases) -> dict[str, Any]:
    n, big, rec = run.sizes.pickup_events, run.sizes.pickup_inbox_rows, p.rec
    details: dict[str, Any] = {}
    poll_small = await poll_query_ms(db)
    run.log(f"pickup/{engine}: {n} app events, paced 10/s, half with 3-day-old UUIDv7s")
    details["outbox"] = record_latencies(run, f"pickup.{engine}.outbox", p.label,
                                         await outbox_phase(p.write, rec, n), rec)
    run.log(f"pickup/{engine}: baseline, {n} events through the Python Publisher")
    baseline = await publisher_baseline(p.publisher, p.tenant, rec, n)
    details["publisher"] = record_latencies(run, f"pickup.{engine}.publisher",
                                            f"{engine}: Python Publisher (baseline)", baseline, rec)
    run.log(f"pickup/{engine}: adding {big:,} rows to the inbox and to the feed")
    details["seed_s"] = round(await grow_inbox(db, big, f"{engine}{int(time.time())}"), 2)
    (top,) = await db.query("SELECT max(seq) AS seq FROM inbox_feed")

    async def caught_up() -> bool:
        cursor = await redis.get(f"{p.queue}:feed:cursor")
        return cursor is not None and int(cursor) >= int(top["seq"])

    walk = await _wait_for(caught_up, 300, "the feed poller did not walk the added feed rows")
    run.record(f"pickup.{engine}.backlog_walk_s", f"{engine}: feed poller walks {big:,} already-applied feed rows",
               walk, "s", "a backlog only: steady-state polls read past the end")
    poll_large = await poll_query_ms(db)
    for size, (poll, ping) in (("small", poll_small), ("large", poll_large)):
        what = "small inbox" if size == "small" else f"+{big:,} inbox and feed rows"
        run.record(f"pickup.{engine}.poll_ms_{size}", f"{engine}: one feed poll query, {what}", poll, "ms",
                   f"SELECT 1 at the same moments: {ping:.2f} ms")
        run.record(f"pickup.{engine}.poll_vs_select1_{size}", f"{engine}: poll query / SELECT 1, {what}",
                   poll / ping if ping else None, "x")
    run.log(f"pickup/{engine}: {n} app events again, with the large inbox")
    details["outbox_large"] = record_latencies(run, f"pickup.{engine}.outbox_large", f"{p.label}, +{big:,} rows",
                                               await outbox_phase(p.write, rec, n), rec)
    return details
