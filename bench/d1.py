"""The apply path on D1: the bridge Worker under miniflare (workerd's D1 engine), on loopback.

The worker runs in this process (the production `worker_settings`, an arq `Worker`), so the
`D1BridgeDatabase` it builds can be read afterwards: its `requests` counter gives HTTP requests per
applied event. Its logs go to logs/bench-process.log (see bench.core.route_logs_to).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import time
from collections.abc import Iterator
from typing import Any

from redis.asyncio import Redis

from bench.apply import publish_all, require_payments
from bench.core import NotAvailable, Run
from bench.payments_data import seed_invoices
from bench.procs import drain_time
from store.migrate import migrate
from workers.deps import Deps


@contextlib.contextmanager
def d1_bridge(run: Run, scenario: str) -> Iterator[tuple[str, str, str]]:
    """The D1 bridge Worker under miniflare for one scenario: its URL, application token and migration
    token; `NotAvailable` when node, npm or miniflare cannot start it. Stopped on leaving."""
    try:
        from tests.support.d1bridge import start_bridge  # noqa: PLC0415
    except ImportError as exc:
        raise NotAvailable(f"the D1 bridge harness is missing: {exc}") from exc
    token, migration_token = secrets.token_hex(16), secrets.token_hex(16)
    run.log(f"{scenario}: starting the D1 bridge Worker under miniflare")
    try:
        bridge = start_bridge(None, token, migration_token)
        url = bridge.__enter__()
    except RuntimeError as exc:
        raise NotAvailable(f"the D1 bridge could not start (node/npm/miniflare): {exc}") from exc
    try:
        yield url, token, migration_token
    finally:
        bridge.__exit__(None, None, None)


async def run_d1(run: Run) -> None:
    require_payments()
    with d1_bridge(run, "d1") as (url, token, migration_token):
        await _measure(run, url, token, migration_token)


async def _measure(run: Run, url: str, token: str, migration_token: str) -> None:
    from bootstrap.worker import worker_settings  # noqa: PLC0415
    from config import Settings  # noqa: PLC0415
    from store.d1 import D1BridgeDatabase  # noqa: PLC0415
    from workers.lifecycle import PipelineWorker, stop_worker  # noqa: PLC0415

    n, queue = run.sizes.d1_events, "bench:apply:d1"
    async with D1BridgeDatabase(url, migration_token, setting="D1_MIGRATION_TOKEN") as admin:
        await migrate(admin)
    db = D1BridgeDatabase(url, token)
    try:
        refs = await seed_invoices(db, n)
        run.log(f"d1: publishing {n} payment.captured events through the bridge")
        started = time.perf_counter()
        before = db.requests
        await publish_all(db, run.redis_url, queue, refs, 118_000)  # type: ignore[arg-type]
        publish_s = time.perf_counter() - started
        run.record("d1.publish_requests_per_event", "D1: HTTP requests per published event",
                   (db.requests - before) / n, "req/event")
    finally:
        await db.close()
    run.record("d1.publish_rate", "D1: publish (inbox insert + enqueue), 50 concurrent", n / publish_s, "events/s")

    # The feed poller is off here: its idle polls (4 bridge requests a second) would blur the requests
    # per applied event; the pickup scenario measures it.
    settings = Settings.from_fields(database_url=f"d1+{url}", d1_bridge_token=token, redis_url=run.redis_url,
                                    queue_name=queue, log_json=True, feed_enabled=False)
    seen: dict[str, Any] = {}

    def keep(deps: Deps) -> Deps:
        seen["db"], seen["start"] = deps.db, deps.db.requests  # type: ignore[attr-defined]
        return dataclasses.replace(deps)

    run.log(f"d1: one worker (in this process) applying {n} events through the bridge")
    worker = PipelineWorker(**worker_settings(settings, customize=keep), handle_signals=False)
    task = asyncio.create_task(worker.async_run())
    redis = Redis.from_url(run.redis_url)
    try:
        drain = await drain_time(redis, queue, n, [], within=max(120.0, n / 5))
    finally:
        await redis.aclose()
        await stop_worker(worker)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    requests = seen["db"].requests - seen["start"]
    run.record("apply.d1.inprocess", "apply, 1 worker, D1 bridge (miniflare)", drain.per_second, "events/s")
    run.record("d1.requests_per_event", "D1: HTTP requests per applied event", requests / n, "req/event",
               f"{requests} requests for {n} events, incl. the startup re-drive sweep")
    run.extra["d1_run"] = {"events": n, "timed_events": drain.depth_at_start, "seconds": round(drain.seconds, 3),
                           "requests_during_run": requests}
