"""The worker process's life: polling that survives Redis outages, a heartbeat, and clean stops.

Redis going away (a restart, a failover, an outage of any length) is not an error the worker dies of:
a poll that fails is logged once (`redis_unavailable`), retried after a short backoff (at most 2 s),
and when Redis answers again (`redis_recovered`) the worker puts back what the outage may have cost:
jobs it finished while Redis was gone are made due again (the inbox guard makes a second run of a
committed one a no-op), and every pending inbox row is re-driven at once, in case Redis came back
empty. A worker whose poll stays stuck (not failing, not finishing) for `STUCK_AFTER_S` exits non-zero
for its supervisor to restart it: never a live process doing nothing. Stopping never needs Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from signal import Signals
from typing import Any

import structlog
from arq.connections import create_pool, log_redis_info
from arq.constants import in_progress_key_prefix
from arq.utils import to_ms
from arq.worker import Worker
from redis.exceptions import AuthenticationError, AuthorizationError, BusyLoadingError, ReadOnlyError, WatchError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from observability.instruments import redis_error_kind
from producers.redrive import redrive
from workers.claim import Claimer, Finisher, finish_commands
from workers.deps import Deps
from workers.feed import stop_feed
from workers.heartbeat import Heartbeat
from workers.jobrun import Claimed, check_supported, run_claimed
from workers.wake import WakeListener

log = structlog.get_logger("studiovault.worker")

# What a lost, restarting, loading, frozen or failed-over Redis raises through redis-py and arq (a
# connection error inside a WATCHed pipeline surfaces as WatchError). Waiting fixes these.
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, BusyLoadingError, ReadOnlyError, WatchError, OSError,
              TimeoutError)
# Connection errors by their class, but waiting does not fix them: the worker exits for an operator.
REDIS_MISCONFIGURED = (AuthenticationError, AuthorizationError)
SENTINEL_SUFFIX = ":sentinel"  # after the queue's name; no TTL: gone means Redis lost its data
SENTINEL_EVERY_S = 5.0
RETRY_S = (0.25, 0.5, 1.0, 2.0)  # between polls while Redis is unreachable: back within 2 s of its return
STUCK_AFTER_S = 60.0
arq_log = logging.getLogger("arq.worker")  # arq's start-up lines, as arq writes them


class PipelineWorker(Worker):
    """arq's `Worker`, made to survive Redis outages (see the module), with a heartbeat, and telling
    when its poller is between two polls: the one moment it can be cancelled without cutting a Redis
    exchange in half (which would leave a job half-started and a connection object half-open)."""

    def __init__(self, *args: Any, heartbeat: Heartbeat | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        check_supported(self)
        self.between_polls = asyncio.Event()  # set after start-up and each poll; clear while polling
        self.heartbeat = heartbeat
        self.redis_down_since: float | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._poll_started: float | None = None
        self._finished_unrecorded: set[str] = set()  # jobs that ran while Redis was gone
        self._background: set[asyncio.Task[None]] = set()
        self._sentinel_checked: float | None = None
        self._claimer: Claimer | None = None
        self._finisher: Finisher | None = None
        self._slot_freed = asyncio.Event()
        self.wake: WakeListener | None = None  # once started

    async def main(self) -> None:
        """arq 0.28's `Worker.main`, except the pause between two polls: up to `poll_delay`, as in arq,
        but it ends as soon as a producer announces enqueued jobs (`workers.wake`), or, when every slot
        was taken (arq's poll then does not read the queue at all), as soon as a slot frees. Both cut
        idle time: with a full queue, a slot freed just after such a poll used to wait ~10 ms for the
        next one, a quarter of each 50-job cycle (measured)."""
        watchdog = asyncio.ensure_future(self._watch_for_a_stuck_poll())
        wake: WakeListener | None = None
        try:
            if self._pool is None:
                self._pool = await create_pool(self.redis_settings, job_deserializer=self.job_deserializer,
                                               job_serializer=self.job_serializer, default_queue_name=self.queue_name,
                                               expires_extra_ms=self.expires_extra_ms)
            arq_log.info("Starting worker for %d functions: %s", len(self.functions), ", ".join(self.functions))
            await log_redis_info(self.pool, arq_log.info)
            self.ctx["redis"] = self.pool
            if self.on_startup:
                await self.on_startup(self.ctx)
            wake = self.wake = WakeListener(self.pool, self.queue_name).start()
            loop = asyncio.get_running_loop()
            while True:
                began = loop.time()
                await self._poll_iteration()
                if self.burst:
                    if 0 <= self.max_burst_jobs <= self._jobs_started():
                        await asyncio.gather(*self.tasks.values())
                        return
                    if await self.pool.zcard(self.queue_name) == 0:
                        await asyncio.gather(*self.tasks.values())
                        return
                remaining = self.poll_delay_s - (loop.time() - began)
                if self.job_counter >= self.max_jobs:
                    # every slot taken: arq's poll skipped the queue, so poll again as soon as one frees
                    await self._a_slot_frees(within=max(remaining, 0.0))
                else:
                    await wake.wait(remaining)
        finally:
            watchdog.cancel()
            if wake is not None:
                await wake.close()

    async def _poll_iteration(self) -> None:
        self.between_polls.clear()
        now = time.monotonic()
        if self.redis_down_since is not None and now < self._retry_at:
            self.between_polls.set()
            return
        self._poll_started = now
        try:
            await super()._poll_iteration()
            await self._check_sentinel()
        except REDIS_MISCONFIGURED:
            raise  # the worker stops (exit 1): a password or ACL to fix, not an outage to wait out
        except REDIS_DOWN as exc:
            self._count_redis_error(exc)
            self._redis_failed(exc)
        else:
            if self.redis_down_since is not None:
                self._redis_back()
            if self.heartbeat is not None:
                self.heartbeat.beat()
            deps: Deps | None = self.ctx.get("deps")
            if deps is not None:
                deps.metrics.polled()  # the heartbeat metric: Redis answered this poll
        finally:
            self._poll_started = None
            self.between_polls.set()

    async def _check_sentinel(self) -> None:
        """A Redis that lost its data (FLUSHALL, a restart without persistence) lost the queued jobs with it:
        noticed within `SENTINEL_EVERY_S` by a running worker or at once by a starting one, and every
        pending event is re-driven at once (by the one worker whose SET NX created the key)."""
        now = time.monotonic()
        if self._sentinel_checked is not None and now - self._sentinel_checked < SENTINEL_EVERY_S:
            return
        # One per queue: deployments sharing a Redis each re-drive their own inbox.
        created = await self.pool.set(self.queue_name + SENTINEL_SUFFIX, b"1", nx=True)
        if created:
            # Also on this worker's first look: Redis may have lost its data while no worker watched it
            # (every worker restarting with it). On a first deployment the re-drive finds nothing to do.
            log.warning("redis_data_lost", action="re-driving every pending event now",
                        seen_by="a running worker" if self._sentinel_checked is not None else "a starting worker")
            self._spawn(self._redrive_now())
        self._sentinel_checked = now

    async def _sleep_until_tasks_complete(self) -> None:
        """arq's waits while `self.tasks` is non-empty, which counts finished jobs the poller has not yet
        swept (it cannot sweep during an outage): wait only for jobs still running."""
        while running := [t for t in self.tasks.values() if not t.done()]:
            await asyncio.wait(running)

    async def _wait_for_tasks_to_complete(self, signum: Signals) -> None:
        """arq's, on SIGTERM/SIGINT (running jobs get `job_completion_wait`), except that the poller is
        cancelled only between two polls, never half-way through starting a job (see `stop_worker`)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._sleep_until_tasks_complete(), self._job_completion_wait)
        for task in self.tasks.values():
            if not task.done():
                task.cancel()
        if self.main_task is not None:
            await _until_between_polls(self, self.main_task, within=10.0)
            self.main_task.cancel()
        if self.on_stop is not None:
            self.on_stop(signum)

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        """arq's, but the jobs that fit the free slots are claimed in ONE Redis call (`workers.claim`)
        instead of four round trips each. With every slot taken, it waits up to `poll_delay` for one to
        free (arq's slow per-job start gave its jobs that time) before leaving the rest to the next poll.
        Slots are given back for jobs not claimed, or when Redis fails half-way (arq would leak them,
        and after a few outages a worker would have no capacity left)."""
        if self._claimer is None:
            self._claimer = Claimer(self.pool, self.queue_name, int(self.in_progress_timeout_s * 1000))
        pending = [job_id.decode() for job_id in job_ids]
        while pending and self.allow_pick_jobs:
            if self.job_counter >= self.max_jobs and not await self._a_slot_frees():
                return
            slots = 0
            while slots < len(pending) and self.job_counter < self.max_jobs:
                await self.sem.acquire()  # a slot is free: returns at once
                self.job_counter += 1
                slots += 1
            batch, pending = pending[:slots], pending[slots:]
            try:
                claimed = await self._claimer.claim(batch, int(time.time() * 1000))
            except BaseException:
                self._free_slots(slots)
                raise
            self._free_slots(slots - len(claimed))
            for job in claimed:
                task = self.loop.create_task(self._run_claimed(job))
                task.add_done_callback(self._job_ended)
                self.tasks[job.job_id] = task

    def _job_ended(self, _: asyncio.Task[None]) -> None:
        self._release_sem_dec_counter_on_complete()
        self._slot_freed.set()

    async def _a_slot_frees(self, within: float | None = None) -> bool:
        """Wait up to `within` s (`poll_delay`) for a job slot to free; whether one is free."""
        self._slot_freed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.poll_delay_s if within is None else within):
                await self._slot_freed.wait()
        return self.job_counter < self.max_jobs

    async def finish_job(self, job_id: str, finish: bool, result_data: bytes | None,  # noqa: PLR0917 - arq's
                         result_timeout_s: float | None, keep_result_forever: bool, incr_score: int | None,
                         keep_in_progress: float | None) -> None:
        """arq's, in a transaction shared with the jobs finishing at the same moment (`Finisher`)."""
        if self._finisher is None:
            self._finisher = Finisher(self.pool)
        await self._finisher.run(functools.partial(
            finish_commands, queue_name=self.queue_name, job_id=job_id, finish=finish, result_data=result_data,
            result_px=None if keep_result_forever or result_timeout_s is None else to_ms(result_timeout_s),
            incr_score=incr_score, keep_in_progress=keep_in_progress))

    def _free_slots(self, n: int) -> None:
        for _ in range(n):
            self.job_counter -= 1
            self.sem.release()

    async def _run_claimed(self, job: Claimed) -> None:
        try:
            await run_claimed(self, job)
        except REDIS_DOWN:  # arq could not record how the job ended: put it back once Redis is here
            self._finished_unrecorded.add(job.job_id)

    def _count_redis_error(self, exc: BaseException) -> None:
        deps: Deps | None = self.ctx.get("deps")
        if deps is not None:
            deps.metrics.redis_error(redis_error_kind(exc))

    def _redis_failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self.redis_down_since is None:
            self.redis_down_since = now
            log.error("redis_unavailable", error=f"{type(exc).__name__}: {exc}"[:300],
                      retry_every_s=RETRY_S[-1])
        self._retry_at = now + RETRY_S[min(self._failures, len(RETRY_S) - 1)]
        self._failures += 1

    def _redis_back(self) -> None:
        outage = time.monotonic() - (self.redis_down_since or time.monotonic())
        self.redis_down_since, self._failures = None, 0
        log.info("redis_recovered", outage_s=round(outage, 1), jobs_to_put_back=len(self._finished_unrecorded))
        self._spawn(self._put_back())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _put_back(self) -> None:
        """After an outage: jobs that ran meanwhile are due again at once (not after their in-progress key
        expires, job_timeout + 10 s later), and every pending event is re-driven."""
        try:
            for job_id in list(self._finished_unrecorded):
                await self.pool.delete(in_progress_key_prefix + job_id)
                await self.pool.zadd(self.queue_name, {job_id: int(time.time() * 1000)}, xx=True)
                self._finished_unrecorded.discard(job_id)
        except Exception as exc:  # noqa: BLE001 - their keys expire by themselves; the re-drive still runs
            log.warning("redis_recovery_incomplete", error=f"{type(exc).__name__}: {exc}"[:300])
        await self._redrive_now()

    async def _redrive_now(self) -> None:
        deps = self.ctx.get("deps")
        if deps is None:
            return
        try:
            examined, enqueued = await redrive(deps.db, deps.queue, datetime.now(UTC), timedelta(0))
        except Exception as exc:  # noqa: BLE001 - the minute re-drive cron is the safety net
            log.warning("redrive_failed", error=f"{type(exc).__name__}: {exc}"[:300])
        else:
            log.info("redrive_after_redis_outage", examined=examined, enqueued=enqueued)

    async def _watch_for_a_stuck_poll(self) -> None:
        while True:
            await asyncio.sleep(5.0)
            started = self._poll_started
            if started is not None and time.monotonic() - started > STUCK_AFTER_S:
                log.critical("worker_stuck", poll_running_s=round(time.monotonic() - started, 1),
                             action="exiting for the supervisor to restart the worker")
                os._exit(70)  # a hung call cannot be cancelled cleanly; nothing is lost (the inbox is durable)


async def _until_between_polls(worker: PipelineWorker, poller: asyncio.Task[None], within: float) -> None:
    """Wait until the poller is asleep between polls (it may still be starting up), or has ended."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not worker.between_polls.is_set() and not poller.done() and loop.time() < deadline:
        idle = asyncio.ensure_future(worker.between_polls.wait())
        await asyncio.wait([idle, poller], timeout=deadline - loop.time(), return_when=asyncio.FIRST_COMPLETED)
        idle.cancel()


async def stop_worker(worker: PipelineWorker, grace: float = 0.0) -> None:
    """Stop a worker and release all it holds, whatever it is doing (starting up, polling, applying),
    whether Redis answers or not.

    It picks no new job at once; running jobs get `grace` seconds to finish, then are cancelled. A
    cancelled job loses nothing: its batch never committed, so its inbox row is still pending and arq
    (or the re-drive) runs it again. arq's own `close()` is not used: it gathers the job tasks and so
    re-raises a cancelled job's CancelledError, and it talks to Redis before `on_shutdown`, so with
    Redis gone the database and HTTP client were never closed (and aiosqlite's threads kept the
    process alive); and it cancels the poller wherever it is, even half-way through starting a job.
    """
    loop = asyncio.get_running_loop()
    worker.allow_pick_jobs = False
    await stop_feed(worker.ctx)
    poller = worker.main_task
    if poller is not None:  # finish start-up and the current poll: no job starts after it
        await _until_between_polls(worker, poller, within=max(grace, 10.0))
    deadline = loop.time() + grace
    while (running := [t for t in list(worker.tasks.values()) if not t.done()]) and loop.time() < deadline:
        await asyncio.wait(running, timeout=deadline - loop.time())
    if poller is not None and not poller.done():
        await _until_between_polls(worker, poller, within=10.0)
        poller.cancel()  # no await since that check: it is asleep between polls (unless stuck past 10 s)
        await asyncio.gather(poller, return_exceptions=True)
    jobs = [*worker.tasks.values(), *worker._background]
    for task in jobs:
        task.cancel()
    await asyncio.gather(*jobs, return_exceptions=True)
    worker.tasks.clear()
    await _close(worker)


async def _close(worker: PipelineWorker) -> None:
    """What arq's `close()` does, in an order that does not depend on Redis."""
    if worker.on_shutdown:
        await worker.on_shutdown(worker.ctx)  # the database and HTTP client first: they need no Redis
    pool = worker._pool
    if pool is None:
        return
    with contextlib.suppress(*REDIS_DOWN):
        async with asyncio.timeout(2.0):
            await pool.delete(worker.health_check_key)
    with contextlib.suppress(*REDIS_DOWN):
        await pool.aclose(close_connection_pool=True)
    worker._pool = None
    if worker.heartbeat is not None:
        worker.heartbeat.clear()
