"""Redis going away under running workers, the fault operators meet most: workers stay the same processes,
say so once, and resume within seconds of its return; every accepted event is applied exactly once."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from store.sqlite import SqliteDatabase
from tests.support.cluster import Cluster
from tests.support.processes import cli
from tests.support.redis_server import RedisProcess

pytestmark = pytest.mark.slow
# The shipped settings, not the suite's fast ones: what an operator runs is what is tested.
DEFAULTS = {"SV_JOB_TIMEOUT": "30", "SV_REDRIVE_GRACE": "60", "SV_BACKOFF_BASE": "1", "SV_BACKOFF_CAP": "900",
            "SV_SHUTDOWN_GRACE": "10"}


@pytest.fixture
async def cluster(sqlite_db: SqliteDatabase, tmp_path: Path) -> AsyncIterator[Cluster]:
    running = Cluster(sqlite_db, f"sqlite:///{sqlite_db.path}", RedisProcess(tmp_path / "redis"), tmp_path,
                      env_overrides=DEFAULTS)
    await running.start()
    try:
        yield running
    finally:
        running.stop()


async def steady(cluster: Cluster, http: httpx.AsyncClient, count: int, every_s: float) -> None:
    for capture in cluster.new_captures(count):
        await cluster.deliver(http, capture)
        await asyncio.sleep(every_s)


@pytest.mark.parametrize("outage_s", [2, 30])
async def test_redis_killed_and_restarted_under_load_loses_nothing_and_work_resumes_within_seconds(
    cluster: Cluster, outage_s: int
) -> None:
    pids = {name: proc.pid for name, proc in cluster.procs.items()}
    async with httpx.AsyncClient(timeout=10) as http:
        await steady(cluster, http, 10, 0.05)
        flowing = asyncio.create_task(steady(cluster, http, 20, outage_s / 20))  # webhooks keep coming
        cluster.redis.kill()
        await asyncio.sleep(outage_s)
        cluster.redis.start()  # no persistence: it comes back empty, the queue lost with it
        back = time.monotonic()
        await flowing
        await steady(cluster, http, 10, 0.02)
    await cluster.settled(within=15 - (time.monotonic() - back))
    assert time.monotonic() - back <= 15
    await cluster.exactly_once()
    assert {name: proc.pid for name, proc in cluster.procs.items()} == pids  # the same processes, all alive
    for name in ("worker-0", "worker-1"):
        events = cluster.events(name)
        assert events.count("redis_unavailable") == 1, events  # once per outage, not a line per poll
        assert events.count("redis_recovered") == 1
    # uvicorn re-raises SIGTERM after its graceful shutdown, so the ingress ends "killed by SIGTERM".
    assert cluster.stop() == {"ingress": -15, "worker-0": 0, "worker-1": 0}
    assert "Application shutdown complete." in cluster.events("ingress")


async def test_a_worker_stopped_during_an_outage_exits_0_promptly_and_closes_everything(cluster: Cluster) -> None:
    cluster.redis.kill()
    await asyncio.sleep(1.0)
    started = time.monotonic()
    codes = cluster.stop()
    assert codes["worker-0"] == codes["worker-1"] == 0
    assert time.monotonic() - started < 15
    assert "worker_stopped" in cluster.events("worker-0")


async def test_chaos_worker_kills_a_flushall_and_a_redis_restart_under_triple_shuffled_deliveries(
    cluster: Cluster
) -> None:
    """Bounded: 45 captures, each delivered 3 times in shuffled order, while a worker is SIGKILLed and
    started again, Redis is flushed, and Redis is killed and restarted. 0 lost, 0 doubled, 0 pending."""
    captures = cluster.new_captures(45)
    deliveries = [c for c in captures for _ in range(3)]
    random.Random(7).shuffle(deliveries)  # noqa: S311 - a reproducible test order, not a secret
    rounds = [deliveries[i::5] for i in range(5)]

    async def chaos(step: int) -> None:
        if step == 0:
            cluster.kill("worker-0")
            cluster.spawn("worker-0", "worker")
        elif step == 1:
            client = aioredis.from_url(cluster.redis.url)
            await client.flushall()
            await client.aclose()
        elif step == 2:
            cluster.redis.kill()
            await asyncio.sleep(3)
            cluster.redis.start()
        elif step == 3:
            cluster.kill("worker-1")
            cluster.spawn("worker-1", "worker")

    async with httpx.AsyncClient(timeout=10) as http:
        for step, batch in enumerate(rounds):
            sending = asyncio.gather(*(cluster.deliver(http, capture) for capture in batch))
            await chaos(step)
            await sending
    # A SIGKILLed worker's running job is re-run after its in-progress key expires (job timeout + 10 s);
    # the shipped job timeout is 30 s, so this waits for it.
    await cluster.settled(within=90)
    await cluster.exactly_once()


async def test_redis_emptied_while_no_worker_ran_is_noticed_by_the_workers_that_start(cluster: Cluster) -> None:
    """Every worker down (a host reboot) and Redis back empty: no worker saw an outage, so none has one to
    recover from; the first to find the sentinel missing re-drives, long before the minute cron would."""
    cluster.kill("worker-0")
    cluster.kill("worker-1")
    # the first worker of the cluster found a fresh Redis without a sentinel too: count only what comes after
    before = {name: cluster.events(name).count("redis_data_lost") for name in ("worker-0", "worker-1")}
    async with httpx.AsyncClient(timeout=10) as http:
        for capture in cluster.new_captures(8):
            await cluster.deliver(http, capture)
    assert await cluster.pending() == 8
    client = aioredis.from_url(cluster.redis.url)
    await client.flushall()  # the queued jobs are gone; the inbox rows are durable
    await client.aclose()
    cluster.spawn("worker-0", "worker")
    cluster.spawn("worker-1", "worker")
    await cluster.settled(within=20)
    await cluster.exactly_once()
    found = [name for name in before if cluster.events(name).count("redis_data_lost") > before[name]]
    assert len(found) == 1, cluster.tails()  # one SET NX wins; the other worker does not re-drive again


async def test_a_worker_started_before_its_redis_waits_for_it_then_works(sqlite_db: SqliteDatabase,
                                                                          tmp_path: Path) -> None:
    cluster = Cluster(sqlite_db, f"sqlite:///{sqlite_db.path}", RedisProcess(tmp_path / "redis"), tmp_path,
                      workers=0, env_overrides=DEFAULTS)
    cluster.spawn("worker-0", "worker")
    try:
        deadline = time.monotonic() + 30
        while "redis_unavailable" not in cluster.events("worker-0"):
            cluster.assert_alive()
            assert time.monotonic() < deadline, cluster.tails()
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        assert cluster.events("worker-0").count("redis_unavailable") == 1
        cluster.redis.start()
        while "worker_ready" not in cluster.events("worker-0"):
            cluster.assert_alive()
            assert time.monotonic() < deadline + 10, cluster.tails()
            await asyncio.sleep(0.1)
        assert "redis_recovered" in cluster.events("worker-0")
    finally:
        assert cluster.stop()["worker-0"] == 0


async def test_worker_check_fails_while_the_worker_cannot_poll_and_passes_again_after(
    sqlite_db: SqliteDatabase, tmp_path: Path
) -> None:
    """`studiovault worker --check` is the healthcheck that tells a working worker from a live idle one."""
    cluster = Cluster(sqlite_db, f"sqlite:///{sqlite_db.path}", RedisProcess(tmp_path / "redis"), tmp_path,
                      workers=1, env_overrides={"SV_HEARTBEAT_MAX_AGE_S": "2"})
    await cluster.start()
    check_env = {**cluster.env, "SV_HEARTBEAT_FILE": str(tmp_path / "worker-0.heartbeat"),
                 "SV_HEARTBEAT_MAX_AGE_S": "2"}
    try:
        assert cli(check_env, "worker", "--check").returncode == 0
        cluster.redis.kill()
        await asyncio.sleep(3.5)
        stale = cli(check_env, "worker", "--check")
        assert stale.returncode == 1
        assert "last poll of Redis was" in stale.stdout
        cluster.redis.start()
        await asyncio.sleep(3.0)
        assert cli(check_env, "worker", "--check").returncode == 0
        missing = cli({**check_env, "SV_HEARTBEAT_FILE": str(tmp_path / "nope")}, "worker", "--check")
        assert (missing.returncode, "no worker heartbeat" in missing.stdout) == (1, True)
    finally:
        cluster.stop()
