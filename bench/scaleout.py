"""Scale-out and D1 at a distance: 1, 2 and 4 `studiovault worker` processes on SQLite and on D1.

Every configuration's workers start on an empty queue; once each has logged `worker_ready`, the
pre-published jobs are moved onto it in one `RENAME` (so a slow-starting process does not leave the
drain to the others), and the drain is timed as in `apply` (first job done → queue empty).
SQLite: N pre-published `payment.captured` events, one invoice each.
D1: the bridge Worker under miniflare (one in-memory database for the whole scenario), with a
`bench.proxy.DelayProxy` between the workers and the bridge adding 0, 25 or 100 ms each way (0, 50,
200 ms round trip). Per delay and worker count, on its own queue:
- **drain**: N events published straight to the bridge, then the workers start and drain them;
  events/s, and HTTP requests through the workers' proxy / N (includes each worker's start-up sweep);
- **paced**: with the same workers running, M more events offered open-loop by a `Publisher` behind a
  second proxy with the same delay (the ingress is as far from D1 as the worker) at half the drain
  rate; end to end per event, inbox `created_at` → the worker's `event_applied` log line (see
  `bench.latency`), p50/p99, and requests per applied event at that steady rate.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from bench.apply import WorkerGroup, prepare, publish_all, require_payments
from bench.core import Run
from bench.d1 import d1_bridge
from bench.latency import commit_times, end_to_end_ms
from bench.payments_data import InvoiceRef, captured_envelope, seed_invoices
from bench.procs import Drain, drain_time, log_tail, peak_rss_mb, pipeline_env
from bench.proxy import DelayProxy
from events.publish import Publisher
from jobqueue.arq_redis import ArqQueue, connect
from store.migrate import migrate

WORKERS = (1, 2, 4)
PACED_SECONDS_MAX = 20.0
READY_WITHIN_S = 60.0


async def release_when_ready(redis: Redis, logs: list[Path], procs: list[subprocess.Popen[bytes]], staging: str,
                             queue: str) -> None:
    """Wait until every worker has logged `worker_ready`, then move the staged jobs onto their queue."""
    deadline = time.monotonic() + READY_WITHIN_S
    while not all('"worker_ready"' in (p.read_text(errors="replace") if p.exists() else "") for p in logs):
        if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
            raise RuntimeError(f"the workers were not all ready within {READY_WITHIN_S:.0f} s:\n{log_tail(logs[0])}")
        await asyncio.sleep(0.05)
    await redis.rename(staging, queue)


async def _drain(run: Run, redis: Redis, name: str, procs: list[subprocess.Popen[bytes]], *, staging: str,
                 queue: str, events: int, on_release: Callable[[], object] = lambda: None) -> Drain:
    logs = [run.subdir("logs") / f"worker-{name}-{i}.log" for i in range(len(procs))]
    try:
        await release_when_ready(redis, logs, procs, staging, queue)
        on_release()
        return await drain_time(redis, queue, events, procs, within=max(120.0, events / 2))
    except (RuntimeError, TimeoutError) as exc:
        raise RuntimeError(f"{exc}\n{log_tail(logs[0])}") from exc


async def _sqlite(run: Run, workers: int) -> None:
    from store.sqlite import SqliteDatabase  # noqa: PLC0415

    n, name = run.sizes.scaleout_events, f"scaleout-{workers}w"
    path, staging = await prepare(run, name, n, hot=False)
    queue = f"{staging}:go"
    redis = Redis.from_url(run.redis_url)
    try:
        with WorkerGroup(pipeline_env(f"sqlite:///{path}", run.redis_url, queue), run.subdir("logs"), name,
                         workers) as procs:
            drain = await _drain(run, redis, name, procs, staging=staging, queue=queue, events=n)
            for p in procs:
                run.note_rss("worker", peak_rss_mb(p.pid))
    finally:
        await redis.aclose()
    db = await SqliteDatabase.open(path)
    try:
        applied = (await db.query("SELECT count(*) AS n FROM event_inbox WHERE status = 'applied'"))[0]["n"]
    finally:
        await db.close()
    run.extra.setdefault("scaleout_sqlite", {})[name] = {"events": n, "timed_events": drain.depth_at_start,
                                                           "seconds": round(drain.seconds, 3), "applied": applied}
    valid = applied == n
    run.record(f"scaleout.sqlite.{workers}w", f"scale-out: SQLite, {workers} worker(s)",
               drain.per_second if valid else None, "events/s",
               f"{drain.depth_at_start} timed events" if valid else f"INVALID: {applied} of {n} applied")


async def run_scaleout(run: Run) -> None:
    require_payments()
    for workers in WORKERS:
        run.log(f"scaleout: SQLite, {run.sizes.scaleout_events} events, {workers} worker process(es)")
        await _sqlite(run, workers)
    for workers in WORKERS[1:]:
        _ratio(run, f"scaleout.sqlite.{workers}w_vs_1w", f"scale-out: SQLite, {workers} workers / 1",
               f"scaleout.sqlite.{workers}w", "scaleout.sqlite.1w")
    with d1_bridge(run, "scaleout") as (url, token, migration_token):
        await _d1_grid(run, url, token, migration_token)


def _ratio(run: Run, key: str, label: str, top: str, bottom: str) -> None:
    a, b = run.value(top), run.value(bottom)
    run.record(key, label, a / b if a is not None and b else None, "x", f"{top} / {bottom}")


async def _d1_grid(run: Run, url: str, token: str, migration_token: str) -> None:
    from store.d1 import D1BridgeDatabase  # noqa: PLC0415

    n, m, delays = run.sizes.scaleout_events, run.sizes.scaleout_paced, run.sizes.scaleout_delays_ms
    # A warm-up configuration first (workerd's first requests are slow), then the grid, then the 1-worker
    # runs again in reverse order of delay, so drift of the shared machine falls on both sides of a ratio.
    configs = [(0, 1, "warmup"), *((d, w, "") for d in delays for w in WORKERS),
               *((d, 1, "again") for d in reversed(delays))]
    async with D1BridgeDatabase(url, migration_token, setting="D1_MIGRATION_TOKEN") as admin:
        await migrate(admin)
    run.log(f"scaleout: seeding {len(configs) * (n + m)} invoices on D1")
    async with D1BridgeDatabase(url, token) as db:
        refs = await seed_invoices(db, len(configs) * (n + m))
    for i, (delay, workers, tag) in enumerate(configs):
        chunk = refs[i * (n + m):(i + 1) * (n + m)]
        await _d1_config(run, url, token, delay_ms=delay, workers=workers, tag=tag, drain_refs=chunk[:n],
                         paced_refs=chunk[n:])
    for delay in delays:
        one = [run.value(f"scaleout.d1.{delay}ms.1w{t}") for t in ("", ".again")]
        run.record(f"scaleout.d1.{delay}ms.1w.mean", f"D1 +{delay} ms each way, 1 worker: mean of both runs",
                   sum(v for v in one if v is not None) / 2 if None not in one else None, "events/s",
                   " and ".join("n/a" if v is None else f"{v:,.0f}" for v in one))
        for workers in WORKERS[1:]:
            _ratio(run, f"scaleout.d1.{delay}ms.{workers}w_vs_1w", f"D1 +{delay} ms each way: {workers} workers / 1",
                   f"scaleout.d1.{delay}ms.{workers}w", f"scaleout.d1.{delay}ms.1w")
        if delay:
            _ratio(run, f"scaleout.d1.{delay}ms_vs_0ms.1w", f"D1, 1 worker: +{delay} ms each way / 0 ms (means)",
                   f"scaleout.d1.{delay}ms.1w.mean", "scaleout.d1.0ms.1w.mean")
    per_event = [v for d, w, t in configs if t != "warmup"
                 and (v := run.value(f"scaleout.d1.{d}ms.{w}w{f'.{t}' if t else ''}.requests_per_event")) is not None]
    run.record("scaleout.d1.requests_per_event_max", "D1: HTTP requests per applied event, worst configuration",
               max(per_event) if per_event else None, "req/event", "drain phases, start-up excluded")


async def _d1_config(run: Run, url: str, token: str, *, delay_ms: int, workers: int, tag: str,
                     drain_refs: list[InvoiceRef], paced_refs: list[InvoiceRef]) -> None:
    from store.d1 import D1BridgeDatabase  # noqa: PLC0415

    name, n = f"d1-{delay_ms}ms-{workers}w{f'-{tag}' if tag else ''}", len(drain_refs)
    key, queue = f"scaleout.d1.{delay_ms}ms.{workers}w{f'.{tag}' if tag else ''}", f"bench:scaleout:{name}"
    staging = f"{queue}:staged"
    what = f"D1 +{delay_ms} ms each way, {workers} worker(s){f' ({tag})' if tag else ''}"
    run.log(f"scaleout: D1 +{delay_ms} ms each way, {workers} worker process(es){f' ({tag})' if tag else ''}: "
            f"{n} events drained")
    async with D1BridgeDatabase(url, token) as direct:
        await publish_all(direct, run.redis_url, staging, drain_refs, 118_000)  # type: ignore[arg-type]
    port = int(url.rsplit(":", 1)[1])
    lifetime = 300.0 + n / 2
    logs = run.subdir("logs")
    detail: dict[str, Any] = {"events": n, "delay_ms_each_way": delay_ms, "workers": workers}
    async with DelayProxy(port, delay_ms / 1000, max_connections=512, lifetime_s=lifetime) as to_worker, \
            DelayProxy(port, delay_ms / 1000, max_connections=128, lifetime_s=lifetime) as to_publisher:
        env = pipeline_env(f"d1+http://127.0.0.1:{to_worker.port}", run.redis_url, queue,
                           SV_D1_BRIDGE_TOKEN=token, SV_FEED_ENABLED="false")
        redis = Redis.from_url(run.redis_url)
        try:
            with WorkerGroup(env, logs, name, workers) as procs:
                before: list[int] = []  # the requests of the workers' start-up (before the jobs were released)
                drain = await _drain(run, redis, name, procs, staging=staging, queue=queue, events=n,
                                     on_release=lambda: before.append(to_worker.requests))
                drained_requests = to_worker.requests - before[0]
                run.record(key, f"{what}: drain", drain.per_second,
                           "events/s", f"{drain.depth_at_start} timed events")
                run.record(f"{key}.requests_per_event", f"{what}: requests per event", drained_requests / n,
                           "req/event", f"{drained_requests} through the proxy for {n}; start-up: {before[0]}")
                rate = max(2.0, drain.per_second / 2)
                paced = paced_refs[:max(1, int(min(len(paced_refs), rate * PACED_SECONDS_MAX)))]
                run.log(f"scaleout: {what}: {len(paced)} events at {rate:,.0f}/s")
                since_ms = time.time() * 1000 - 1
                async with D1BridgeDatabase(f"http://127.0.0.1:{to_publisher.port}", token) as far:
                    await _paced_publish(far, run.redis_url, queue, paced, rate)
                await drain_time(redis, queue, 1 << 30, procs, within=120.0)
                paced_requests = to_worker.requests - drained_requests
                await asyncio.sleep(0.3)  # the last event_applied lines reach their files
                for p in procs:
                    run.note_rss("worker", peak_rss_mb(p.pid))
        finally:
            await redis.aclose()
        detail.update(drain_s=round(drain.seconds, 3), drain_requests=drained_requests, paced_events=len(paced),
                      paced_rate=rate, paced_requests=paced_requests, refused=to_worker.refused,
                      proxy_connections=to_worker.connections)
    async with D1BridgeDatabase(url, token) as direct:
        lat = await end_to_end_ms(direct, commit_times(logs / f"worker-{name}-{i}.log" for i in range(workers)),
                                  created_after_ms=since_ms)
    summary = lat.summary()
    detail.update(inbox_paced=lat.statuses, ended_at_commit_log=lat.from_log, **summary)
    run.extra.setdefault("scaleout_d1", {})[name] = detail
    note = f"{len(lat.ms)} events at {rate:,.0f}/s (half the drain rate); created_at → commit log line"
    run.record(f"{key}.p50_ms", f"{what}: end to end p50", summary["p50_ms"], "ms",
               note)
    run.record(f"{key}.p99_ms", f"{what}: end to end p99", summary["p99_ms"], "ms")
    run.record(f"{key}.paced_requests_per_event", f"{what}: requests per event, paced",
               paced_requests / len(paced), "req/event")


async def _paced_publish(db: Any, redis_url: str, queue: str, refs: list[InvoiceRef], rate: float) -> None:
    """Open loop: event i is published at start + i / rate, whether or not earlier ones have returned."""
    pool = await connect(redis_url, queue)
    publisher = Publisher(db, ArqQueue(pool, queue), clock=lambda: datetime.now(UTC))
    try:
        start, tasks = time.monotonic(), []
        for i, ref in enumerate(refs):
            wait = start + i / rate - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(publisher.publish(captured_envelope(ref, 118_000))))
        await asyncio.gather(*tasks)
    finally:
        await pool.aclose()
