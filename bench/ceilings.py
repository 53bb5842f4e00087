"""Ceilings, measured in the same run as everything they are compared with:

- one arq worker process draining no-op jobs, tuned (poll_delay 0.01 s, max_jobs 50) and on arq's
  defaults (poll_delay 0.5 s, max_jobs 10);
- Redis itself (`redis-benchmark`, or a pipelined Python loop when it is not installed);
- SQLite small-batch commits through our `SqliteDatabase` adapter.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import time
from urllib.parse import urlparse

from redis.asyncio import Redis

from bench.core import Run, rate
from bench.noop_worker import NOOP_JOB
from bench.procs import PYTHON, drain_time, log_tail, pipeline_env, process
from jobqueue.arq_redis import connect
from store import Statement
from store.sqlite import SqliteDatabase

TUNED = (0.01, 50)
ARQ_DEFAULT = (0.5, 10)


async def enqueue_many(redis_url: str, queue: str, function: str, args: list[tuple[str, ...]], *,
                       job_ids: list[str] | None = None, concurrency: int = 100) -> None:
    """Enqueue jobs with up to `concurrency` calls in flight (arq's own `enqueue_job`)."""
    pool = await connect(redis_url, queue)
    try:
        for start in range(0, len(args), concurrency):
            await asyncio.gather(*(
                pool.enqueue_job(function, *a, _queue_name=queue, _job_id=job_ids[start + i] if job_ids else None)
                for i, a in enumerate(args[start:start + concurrency])
            ))
    finally:
        await pool.aclose()


async def noop_ceiling(run: Run, jobs: int, poll_delay: float, max_jobs: int, *, name: str) -> float:
    """Jobs/s one arq worker process drains when the job does nothing."""
    queue = f"bench:noop:{name}"
    await enqueue_many(run.redis_url, queue, NOOP_JOB, [()] * jobs)
    argv = [PYTHON, "-m", "bench.noop_worker", "--redis", run.redis_url, "--queue", queue,
            "--poll-delay", str(poll_delay), "--max-jobs", str(max_jobs)]
    log_path = run.subdir("logs") / f"noop-{name}.log"
    redis = Redis.from_url(run.redis_url)
    try:
        with process(argv, pipeline_env("", run.redis_url, queue), log_path) as proc:
            try:
                drain = await drain_time(redis, queue, jobs, [proc], within=max(60.0, jobs / 50))
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}\n{log_tail(log_path)}") from exc
    finally:
        await redis.aclose()
    return drain.per_second


def redis_ops_per_second(run: Run) -> tuple[float, str]:
    """SET and GET requests/s against our redis-server (mean of the two), unpipelined."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        ops = asyncio.run(_python_redis_loop(run.redis_url, run.sizes.redis_requests))
        return ops, "python loop (no redis-benchmark)"
    port = str(urlparse(run.redis_url).port)
    done = subprocess.run(
        [binary, "-h", "127.0.0.1", "-p", port, "-q", "-t", "set,get", "-n", str(run.sizes.redis_requests), "-P", "1"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    rates = [float(m) for m in re.findall(r"(?:SET|GET): ([\d.]+) requests per second", done.stdout)]
    if len(rates) != 2:
        raise RuntimeError(f"could not read redis-benchmark's output: {done.stdout[-500:]!r}")
    return sum(rates) / 2, f"redis-benchmark -t set,get -n {run.sizes.redis_requests} -P 1"


async def _python_redis_loop(redis_url: str, requests: int) -> float:
    redis = Redis.from_url(redis_url)
    try:
        started = time.perf_counter()
        for i in range(requests // 2):
            await redis.set(f"bench:key:{i % 1000}", "x")
            await redis.get(f"bench:key:{i % 1000}")
        return rate(requests, time.perf_counter() - started)
    finally:
        await redis.aclose()


async def sqlite_commits_per_second(run: Run, batches: int) -> float:
    """3-statement batches (assert, update, insert), each one BEGIN IMMEDIATE ... COMMIT, in sequence."""
    db = await SqliteDatabase.open(run.subdir("sqlite-ceiling") / "ceiling.db")
    try:
        await db.batch([
            Statement("CREATE TABLE IF NOT EXISTS counters (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)"),
            Statement("CREATE TABLE IF NOT EXISTS entries (id INTEGER PRIMARY KEY, counter INTEGER, at INTEGER)"),
            Statement("INSERT OR IGNORE INTO counters (id, n) VALUES (1, 0)"),
        ])
        started = time.perf_counter()
        for i in range(batches):
            await db.batch([
                Statement("SELECT count(*) FROM counters WHERE id = ? AND n = ?", (1, i)),
                Statement("UPDATE counters SET n = n + 1 WHERE id = ?", (1,)),
                Statement("INSERT INTO entries (counter, at) VALUES (?, ?)", (1, i)),
            ])
        return rate(batches, time.perf_counter() - started)
    finally:
        await db.close()


async def run_ceilings(run: Run) -> None:
    sizes = run.sizes
    run.log(f"ceilings: arq no-op, tuned (poll_delay={TUNED[0]}, max_jobs={TUNED[1]}), {sizes.noop_jobs} jobs")
    tuned = await noop_ceiling(run, sizes.noop_jobs, *TUNED, name="tuned")
    run.record("ceiling.arq_noop_tuned", "arq no-op, 1 worker, tuned", tuned, "jobs/s")
    run.log(f"ceilings: arq no-op, arq defaults (poll_delay={ARQ_DEFAULT[0]}, max_jobs={ARQ_DEFAULT[1]}), "
            f"{sizes.noop_jobs_default} jobs")
    default = await noop_ceiling(run, sizes.noop_jobs_default, *ARQ_DEFAULT, name="default")
    run.record("ceiling.arq_noop_default", "arq no-op, 1 worker, arq defaults", default, "jobs/s")
    run.log("ceilings: Redis")
    ops, how = await asyncio.to_thread(redis_ops_per_second, run)
    run.record("ceiling.redis_ops", "Redis SET/GET", ops, "ops/s", how)
    run.log(f"ceilings: SQLite 3-statement batches through SqliteDatabase, {sizes.sqlite_batches} commits")
    commits = await sqlite_commits_per_second(run, sizes.sqlite_batches)
    run.record("ceiling.sqlite_batches", "SQLite 3-statement batch commits", commits, "commits/s")
