"""Waking an idle worker when jobs are enqueued, instead of letting them wait for its next poll.

A worker polls its queue every `poll_delay` (10 ms): an event enqueued just after a poll waited up to
that long before any worker looked, and that wait was most of an event's latency at moderate load.
The ingress's enqueue script publishes one message on `<queue>:wake` per batch of jobs it enqueued
(`jobqueue.arq_redis.ArqQueue.enqueue_many`, also the re-drive's); each worker listens on that channel
and polls as soon as a message arrives.

Waking is only a shortcut: polling every `poll_delay` goes on as before, so a lost message, a producer
that does not publish (arq's own `enqueue_job`), or a listener cut off by a Redis outage costs latency,
never an event. The listener reconnects by itself (backoff up to 2 s) and never raises.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from redis.asyncio import Redis

from jobqueue.arq_redis import wake_channel

log = structlog.get_logger("studiovault.worker")

RECONNECT_S = (0.25, 0.5, 1.0, 2.0)


class WakeListener:
    """Subscribes to a queue's wake channel on a connection of its own; `wait` returns early on a message."""

    def __init__(self, redis: Redis, queue_name: str) -> None:
        self._redis, self._channel = redis, wake_channel(queue_name)
        self._woken = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()  # set while subscribed (tests wait for it)

    def start(self) -> WakeListener:
        self._task = asyncio.ensure_future(self._listen())
        return self

    async def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True as soon as jobs were enqueued since the last wake-up."""
        if seconds > 0 and not self._woken.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._woken.wait()
        woken = self._woken.is_set()
        self._woken.clear()
        return woken

    async def _listen(self) -> None:
        failures = 0
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self.subscribed.set()
                failures = 0
                while True:
                    if await pubsub.get_message(timeout=30.0) is not None:
                        self._woken.set()
            except Exception as exc:  # noqa: BLE001 - Redis away: the worker's polls notice and log it
                self.subscribed.clear()
                self._woken.set()  # a poll now: what was published meanwhile is not lost, only unannounced
                if failures == 0:
                    log.debug("wake_listener_reconnecting", error=f"{type(exc).__name__}: {exc}"[:200])
                await asyncio.sleep(RECONNECT_S[min(failures, len(RECONNECT_S) - 1)])
                failures += 1
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
